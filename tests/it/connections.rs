//! `xiaoer serve` against clients that open connections and leave them: a flood of silent
//! connections under a 1,024-file limit, a body or headers trickled a byte at a time, a
//! connection left idle. The server is a child process (`support::Server`) whose limits the
//! test sets, so no test waits for the production timeouts.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::support::{eventually, repo_path, Server};

/// The child's open-file limit, soft and hard, as the attacker found it.
const OPEN_FILES: u64 = 1024;

/// Reads until the server closes the connection or `patience` passes; what was read, and how
/// long it took. A reset counts as closed.
fn read_until_closed(stream: &mut TcpStream, patience: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(patience)).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                break
            }
            Err(e) => panic!("not closed after {:?}: {e}", started.elapsed()),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_flood_of_silent_connections_does_not_lock_out_new_clients() {
    // This process holds the flood's client ends: it may need more than its soft limit.
    xiaoer::channels::listener::raise_open_file_limit().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), &repo_path("knowledge"), "", |command| {
        // SAFETY: setrlimit is async-signal-safe and touches only the child being started.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: OPEN_FILES as libc::rlim_t,
                    rlim_max: OPEN_FILES as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
    .unwrap();
    let mut flood: Vec<TcpStream> = (0..1_100)
        .map(|n| {
            TcpStream::connect(&server.addr)
                .unwrap_or_else(|e| panic!("connection {n} of the flood: {e}"))
        })
        .collect();

    let started = Instant::now();
    let (status, health) = server.request("GET", "/health", "");
    assert_eq!(status, 200, "{health}");
    let answered = server.say("flood-buyer", "能开发票吗");
    assert_eq!(answered["topic"], "invoice", "{answered}");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "a new client waited {waited:?} behind 1,100 silent connections"
    );
    // The silent connections idle the longest made room: the very first was closed.
    let (_, _) = read_until_closed(&mut flood[0], Duration::from_secs(10));
    let logged = eventually(|| server.stderr().contains("at the connection cap"));
    assert!(logged, "the closings are logged: {}", server.stderr());
    assert!(
        !server.stderr().contains("Too many open files"),
        "the cap kept the server below its file limit: {}",
        server.stderr()
    );
}

#[test]
fn a_body_sent_a_byte_every_half_second_is_cut_off() {
    let data = tempfile::tempdir().unwrap();
    let settings = "[connections]\nbody_timeout_ms = 2000\n";
    let server = Server::start(data.path(), &repo_path("knowledge"), settings);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    write!(
        stream,
        "POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
    )
    .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(500));
            if writer.write_all(b" ").is_err() {
                return;
            }
        }
    });
    let (response, took) = read_until_closed(&mut stream, Duration::from_secs(20));
    assert!(
        response.starts_with("HTTP/1.1 408"),
        "the slow body is answered 408: {response:?}"
    );
    assert!(response.contains("\"error\""), "{response}");
    assert!(
        took >= Duration::from_millis(1_500) && took < Duration::from_secs(6),
        "cut off after {took:?}, for a 2 s limit"
    );
    trickle.join().unwrap();
    // The server itself is fine.
    assert_eq!(server.request("GET", "/health", "").0, 200);
}

#[test]
fn headers_sent_a_byte_at_a_time_and_silent_connections_are_closed() {
    let data = tempfile::tempdir().unwrap();
    let settings = "[connections]\nheader_timeout_ms = 1000\nidle_timeout_ms = 1500\n";
    let server = Server::start(data.path(), &repo_path("knowledge"), settings);

    let mut slow_head = TcpStream::connect(&server.addr).unwrap();
    slow_head.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    let mut writer = slow_head.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
            .cycle()
            .take(100)
        {
            std::thread::sleep(Duration::from_millis(300));
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
        }
    });
    let (response, took) = read_until_closed(&mut slow_head, Duration::from_secs(20));
    assert_eq!(response, "", "no answer to a head that never ends");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "a head trickled for {took:?} with a 1 s limit"
    );
    trickle.join().unwrap();

    let mut silent = TcpStream::connect(&server.addr).unwrap();
    let (_, took) = read_until_closed(&mut silent, Duration::from_secs(20));
    assert!(
        took >= Duration::from_millis(1_200) && took < Duration::from_secs(6),
        "a silent connection was kept {took:?} with a 1.5 s idle limit"
    );

    // After an answer, a kept-alive connection waits the idle limit for the next request.
    let mut kept_alive = TcpStream::connect(&server.addr).unwrap();
    kept_alive
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (response, took) = read_until_closed(&mut kept_alive, Duration::from_secs(20));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        took >= Duration::from_millis(1_200) && took < Duration::from_secs(6),
        "an idle kept-alive connection was kept {took:?} with a 1.5 s idle limit"
    );
}
