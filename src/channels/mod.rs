//! Adapters between the outside world and the conversation engine. Only here do stdin/stdout
//! and HTTP (and, later, Telegram) appear; each is a thin layer over `service` or `engine`.

pub mod cli;
pub mod console;
pub mod http;
