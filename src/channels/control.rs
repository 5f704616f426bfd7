//! The local control socket of `xiaoer serve`, `DATA/xiaoer.sock` (Unix): how another process
//! reaches the store the running server holds alone (`storage::sqlite` opens it in exclusive
//! locking mode, so no `-shm` file can kill the server). Used by `xiaoer agent add`, which goes
//! through the server when one runs on the folder and opens the store itself otherwise.
//!
//! One request per connection, one JSON line each way. The socket is its owner's alone (mode
//! 0600, in the data folder): whoever can use it could open the database file anyway, so it
//! grants nothing new. A token never crosses it, only the token's hash. It must never offer
//! what the HTTP API refuses to a signed-in agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::service::Service;
use crate::storage::{SqliteStore, Store};

/// The socket's file name in the data folder.
pub const SOCKET_NAME: &str = "xiaoer.sock";
/// The longest request line read.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// What a process asks the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    AddAgent {
        name: String,
        role: String,
        token_hash: String,
    },
}

/// The server's answer: `error` is what went wrong, for the operator.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Answer {
    pub error: Option<String>,
}

/// Adds an agent to the store in `data` with its token's hash: through the server running on
/// the folder, or directly when none runs. The error says why not (a taken name …).
pub fn add_agent(data: &Path, name: &str, role: &str, token_hash: &str) -> Result<()> {
    let request = Request::AddAgent {
        name: name.to_string(),
        role: role.to_string(),
        token_hash: token_hash.to_string(),
    };
    if let Some(answer) = ask_server(data, &request)? {
        return match answer.error {
            None => Ok(()),
            Some(error) => Err(anyhow::anyhow!(error)),
        };
    }
    let store = SqliteStore::open_dir(data)
        .with_context(|| format!("opening the store in {}", data.display()))?;
    let now = chrono::Utc::now().timestamp_millis();
    add_agent_to(&store, name, role, token_hash, now).map_err(|error| anyhow::anyhow!(error))
}

/// Checks the name and role, and adds the agent.
fn add_agent_to(
    store: &dyn Store,
    name: &str,
    role: &str,
    token_hash: &str,
    at_ms: i64,
) -> std::result::Result<(), String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err("an agent name is 1–64 characters without control characters".into());
    }
    if !matches!(role, "agent" | "editor") {
        return Err("--role must be agent or editor".into());
    }
    if token_hash.len() != 64 || !token_hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("a token hash is 64 hex digits".into());
    }
    match store.add_agent(name, role, token_hash, at_ms) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("an agent named {name} already exists")),
        Err(error) => {
            tracing::error!(%error, "adding an agent failed");
            Err(format!("the store failed: {error}"))
        }
    }
}

fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET_NAME)
}

/// Sends `request` to the server on `data`; `None` when no server listens there.
#[cfg(unix)]
fn ask_server(data: &Path, request: &Request) -> Result<Option<Answer>> {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;
    let path = socket_path(data);
    let mut stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        // No socket, or one left by a server that has stopped.
        Err(_) => return Ok(None),
    };
    let mut talk = || -> std::io::Result<String> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        writeln!(stream, "{}", serde_json::to_string(request)?)?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        Ok(line)
    };
    let line = talk().with_context(|| format!("talking to the server at {}", path.display()))?;
    let answer = serde_json::from_str(&line)
        .with_context(|| format!("the server at {} answered {line:?}", path.display()))?;
    Ok(Some(answer))
}

#[cfg(not(unix))]
fn ask_server(_data: &Path, _request: &Request) -> Result<Option<Answer>> {
    Ok(None)
}

/// Listens on `DATA/xiaoer.sock` for the rest of the process; the store in `data` must already
/// be open (so any socket file there is a stale one, and is replaced).
#[cfg(unix)]
pub fn listen(data: &Path, service: Arc<Service>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} its owner's alone", path.display()))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, service.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "control socket: accepting failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
pub fn listen(_data: &Path, _service: Arc<Service>) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
async fn answer(stream: tokio::net::UnixStream, service: Arc<Service>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(reader.take(MAX_REQUEST_BYTES));
    let read = reader.read_line(&mut line);
    let answer = match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => act(request, service).await,
            Err(error) => Answer {
                error: Some(format!("not a request: {error}")),
            },
        },
        Ok(Err(_)) | Err(_) => return,
    };
    let mut reply = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
    reply.push('\n');
    let _ = writer.write_all(reply.as_bytes()).await;
}

async fn act(request: Request, service: Arc<Service>) -> Answer {
    let Request::AddAgent {
        name,
        role,
        token_hash,
    } = request;
    let store = service.store().clone();
    let at_ms = service.clock().now_ms();
    let added = tokio::task::spawn_blocking(move || {
        let added = add_agent_to(store.as_ref(), &name, &role, &token_hash, at_ms);
        if added.is_ok() {
            tracing::info!(agent = %name.trim(), %role, "agent added through the control socket");
        }
        added
    })
    .await
    .unwrap_or_else(|e| Err(format!("adding the agent panicked: {e}")));
    Answer { error: added.err() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_json_line_naming_what_it_asks() {
        let request = Request::AddAgent {
            name: "小王".into(),
            role: "agent".into(),
            token_hash: "ab".repeat(32),
        };
        let line = serde_json::to_string(&request).unwrap();
        assert!(
            line.starts_with(r#"{"request":"add_agent","name":"小王""#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), request);
    }

    #[test]
    fn bad_names_roles_and_hashes_are_refused_and_a_taken_name_is_named() {
        let store = SqliteStore::open_in_memory().unwrap();
        let hash = "ab".repeat(32);
        for (name, role, token_hash) in [
            ("", "agent", hash.as_str()),
            ("a\u{1b}[2J", "agent", hash.as_str()),
            ("小王", "boss", hash.as_str()),
            ("小王", "agent", "not-a-hash"),
        ] {
            assert!(
                add_agent_to(&store, name, role, token_hash, 0).is_err(),
                "{name:?} {role}"
            );
        }
        assert_eq!(add_agent_to(&store, " 小王 ", "agent", &hash, 0), Ok(()));
        let again = add_agent_to(&store, "小王", "editor", &"cd".repeat(32), 0);
        assert_eq!(again, Err("an agent named 小王 already exists".into()));
    }
}
