//! Adapters between the outside world and the engine. Only here do stdin/stdout (and, later,
//! HTTP and Telegram) appear.

pub mod cli;
