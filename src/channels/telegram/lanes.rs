//! Updates of one chat in arrival order, chats in parallel: one queue and one worker task per
//! chat with updates in flight; the worker ends when its queue is empty.
//!
//! Albums: Telegram sends each photo of an album as a message of its own, right one after the
//! other. A queued album message takes in the photos of its album that follow (`Incoming::join`)
//! and is handled once none came for `album_wait`, so an album is one turn whether it came in
//! one poll, over several polls, or as one webhook request per photo. Telegram sends the next
//! update only once the last is acknowledged, so an album's photo is acknowledged once kept
//! (`Keeper`: the store holds it until its album's turn is stored, and a restart queues it
//! again), before its album is handled. Every other update is acknowledged once handled.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use teloxide::types::ChatId;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::update::Incoming;

/// What handles one update (the channel's `handle`).
pub type Handler = Arc<dyn Fn(Incoming) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What keeps an album's photo safe before it is acknowledged (the channel's `hold`).
pub type Keeper = Handler;

struct Job {
    incoming: Incoming,
    /// What fires once it has been handled (none for an album, acknowledged when queued).
    done: Vec<oneshot::Sender<()>>,
    /// When its last update came.
    last: Instant,
}

pub struct Lanes {
    handler: Handler,
    keeper: Keeper,
    /// How long an album waits for its next photo.
    album_wait: Duration,
    /// The waiting jobs of each chat with a worker; a chat is here exactly while its worker
    /// runs. Jobs are queued and workers retire under this lock, so no job is left without one.
    queues: Mutex<HashMap<ChatId, VecDeque<Job>>>,
    /// Wakes the workers waiting for an album's next photo when an update is queued: one that
    /// lands behind the album completes it at once, whatever `album_wait`.
    arrivals: Notify,
}

impl Lanes {
    pub fn new(handler: Handler, keeper: Keeper, album_wait: Duration) -> Arc<Lanes> {
        Arc::new(Lanes {
            handler,
            keeper,
            album_wait,
            queues: Mutex::new(HashMap::new()),
            arrivals: Notify::new(),
        })
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<ChatId, VecDeque<Job>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an update behind the earlier ones of its chat, or joins it to the album waiting
    /// last in the queue. The receiver fires once it has been handled (or its handler failed),
    /// or for an album's photo once kept, so that the next one can come.
    pub fn push(self: &Arc<Self>, incoming: Incoming) -> oneshot::Receiver<()> {
        let (done, handled) = oneshot::channel();
        let done = if incoming.open_album() {
            let keeping = (self.keeper)(incoming.clone());
            tokio::spawn(async move {
                keeping.await;
                let _ = done.send(());
            });
            None
        } else {
            Some(done)
        };
        self.queue(incoming, done);
        handled
    }

    /// Queues an album's photo kept before a restart: it was acknowledged long ago.
    pub fn push_kept(self: &Arc<Self>, incoming: Incoming) {
        self.queue(incoming, None);
    }

    fn queue(self: &Arc<Self>, incoming: Incoming, done: Option<oneshot::Sender<()>>) {
        let chat = incoming.chat;
        let now = Instant::now();
        let mut queues = self.queues();
        let new_lane = !queues.contains_key(&chat);
        let queue = queues.entry(chat).or_default();
        let incoming = match queue.back_mut() {
            Some(last) => match last.incoming.join(incoming) {
                Ok(()) => {
                    last.done.extend(done);
                    last.last = now;
                    return;
                }
                Err(incoming) => incoming,
            },
            None => incoming,
        };
        queue.push_back(Job {
            incoming,
            done: done.into_iter().collect(),
            last: now,
        });
        drop(queues);
        self.arrivals.notify_waiters();
        if new_lane {
            tokio::spawn(self.clone().work(chat));
        }
    }

    async fn work(self: Arc<Self>, chat: ChatId) {
        loop {
            // Registered before looking at the queue, so an update queued meanwhile wakes it.
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let job = match self.next(chat) {
                Next::Job(job) => job,
                Next::Wait(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = arrival => {}
                    }
                    continue;
                }
                Next::Retired => return,
            };
            // Its own task, so a panic in one update neither kills the lane nor the rest.
            let handling = tokio::spawn((self.handler)(job.incoming));
            if let Err(error) = handling.await {
                tracing::error!(chat = chat.0, %error, "handling a Telegram update panicked");
            }
            for done in job.done {
                let _ = done.send(());
            }
        }
    }

    /// The chat's next job; the worker retires (under the lock) when there is none.
    fn next(&self, chat: ChatId) -> Next {
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(&chat) else {
            return Next::Retired;
        };
        let Some(job) = queue.pop_front() else {
            queues.remove(&chat);
            return Next::Retired;
        };
        // An album alone in the queue may still grow.
        if queue.is_empty() && job.incoming.open_album() {
            let ready = job.last + self.album_wait;
            if ready > Instant::now() {
                queue.push_front(job);
                return Next::Wait(ready);
            }
        }
        Next::Job(job)
    }
}

enum Next {
    Job(Job),
    /// Until an album may be complete.
    Wait(Instant),
    Retired,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::telegram::update::Request;
    use crate::dialog::Attachment;

    fn incoming(chat: i64, n: usize) -> Incoming {
        Incoming {
            chat: ChatId(chat),
            source_id: format!("m{n}"),
            album: None,
            request: Request::Welcome,
        }
    }

    fn photo(n: usize, album: Option<&str>) -> Incoming {
        Incoming {
            album: album.map(String::from),
            request: Request::Message {
                text: String::new(),
                attachments: vec![Attachment {
                    kind: "photo".into(),
                    id: format!("p{n}"),
                }],
            },
            ..incoming(1, n)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_albums_photos_are_one_update_even_when_they_come_apart() {
        let seen: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
        let record = seen.clone();
        let kept: Arc<Mutex<Vec<String>>> = Arc::default();
        let keep = kept.clone();
        let lanes = Lanes::new(
            Arc::new(move |incoming: Incoming| {
                let record = record.clone();
                Box::pin(async move {
                    let n_attachments = match &incoming.request {
                        Request::Message { attachments, .. } => attachments.len(),
                        _ => 0,
                    };
                    record
                        .lock()
                        .unwrap()
                        .push((incoming.source_id, n_attachments));
                })
            }),
            Arc::new(move |incoming: Incoming| {
                let keep = keep.clone();
                Box::pin(async move { keep.lock().unwrap().push(incoming.source_id) })
            }),
            // Far longer than the test: the update queued behind the album completes it.
            Duration::from_secs(60),
        );
        // An album's photo is acknowledged once kept, for the next one to come.
        lanes.push(photo(1, Some("a"))).await.unwrap();
        lanes.push(photo(2, Some("a"))).await.unwrap();
        assert_eq!(*kept.lock().unwrap(), ["m1", "m2"]);
        assert!(seen.lock().unwrap().is_empty(), "the album waits for more");
        // A photo a little later, as the next webhook request or poll brings it.
        tokio::time::sleep(Duration::from_millis(30)).await;
        lanes.push(photo(3, Some("a")));
        lanes.push(photo(4, None));
        lanes.push(photo(5, Some("b")));
        lanes.push(incoming(1, 6)).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let expected = [("m1", 3), ("m4", 1), ("m5", 1), ("m6", 0)];
        assert_eq!(seen, expected.map(|(id, n)| (id.to_string(), n)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_chat_in_order_chats_in_parallel() {
        let seen: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
        let record = seen.clone();
        // How many messages the fast chat has had handled.
        let (fast_done, fast_count) = tokio::sync::watch::channel(0);
        let lanes = Lanes::new(
            Arc::new(move |incoming: Incoming| {
                let record = record.clone();
                let fast_done = fast_done.clone();
                let mut fast_count = fast_count.clone();
                Box::pin(async move {
                    // The slow chat waits until the fast one is done (or 10 s, if the fast
                    // one were stuck behind it): it must hold up neither its own order nor
                    // the fast chat.
                    if incoming.chat.0 == 1 {
                        let fast_finished = fast_count.wait_for(|n| *n >= 5);
                        let _ = tokio::time::timeout(Duration::from_secs(10), fast_finished).await;
                    }
                    record
                        .lock()
                        .unwrap()
                        .push((incoming.chat.0, incoming.source_id));
                    if incoming.chat.0 == 2 {
                        fast_done.send_modify(|n| *n += 1);
                    }
                })
            }),
            Arc::new(|_| Box::pin(async {})),
            Duration::ZERO,
        );
        let mut handled = Vec::new();
        for n in 0..5 {
            handled.push(lanes.push(incoming(1, n)));
            handled.push(lanes.push(incoming(2, n)));
        }
        for done in handled {
            done.await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        let order = |chat: i64| -> Vec<String> {
            seen.iter()
                .filter(|(c, _)| *c == chat)
                .map(|(_, s)| s.clone())
                .collect()
        };
        let expected: Vec<String> = (0..5).map(|n| format!("m{n}")).collect();
        assert_eq!(order(1), expected);
        assert_eq!(order(2), expected);
        // The fast chat finished before the slow one's first message.
        let first_slow = seen.iter().position(|(c, _)| *c == 1).unwrap();
        assert_eq!(first_slow, 5, "{seen:?}");
        // Idle workers retire.
        for _ in 0..1000 {
            if lanes.queues().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("idle lanes are still there");
    }
}
