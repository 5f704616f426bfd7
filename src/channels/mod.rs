//! Adapters between the outside world and the conversation engine. Only here do stdin/stdout,
//! HTTP and Telegram appear; each is a thin layer over `service` or `engine`.

pub mod cli;
pub mod console;
pub mod control;
pub mod guard;
pub mod http;
pub mod listener;
pub mod telegram;
