//! Black-box tests of xiaoer, one binary (STYLE.md §6): the real `knowledge/`, the real
//! evaluation set, the real command line.

mod answers;
mod browser;
mod cli;
mod connections;
mod console;
mod conversations;
mod data;
mod evaluation;
mod fake_telegram;
mod health;
mod http_api;
mod kb;
mod phrasing;
mod properties;
mod serve;
mod support;
mod telegram;
