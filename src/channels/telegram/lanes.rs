//! Updates of one chat in arrival order, chats in parallel: one queue and one worker task per
//! chat with updates in flight; the worker ends when its queue is empty.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use teloxide::types::ChatId;
use tokio::sync::{mpsc, oneshot};

use super::update::Incoming;

/// What handles one update (the channel's `handle`).
pub type Handler = Arc<dyn Fn(Incoming) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Job {
    incoming: Incoming,
    done: oneshot::Sender<()>,
}

pub struct Lanes {
    handler: Handler,
    /// The queue of each chat with a worker. Jobs are queued and workers retire under this
    /// lock, so no job is left in a queue without a worker.
    queues: Mutex<HashMap<ChatId, mpsc::UnboundedSender<Job>>>,
}

impl Lanes {
    pub fn new(handler: Handler) -> Arc<Lanes> {
        Arc::new(Lanes {
            handler,
            queues: Mutex::new(HashMap::new()),
        })
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<ChatId, mpsc::UnboundedSender<Job>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an update behind the earlier ones of its chat. The receiver fires once it has
    /// been handled (or its handler failed).
    pub fn push(self: &Arc<Self>, incoming: Incoming) -> oneshot::Receiver<()> {
        let (done, handled) = oneshot::channel();
        let chat = incoming.chat;
        let mut queues = self.queues();
        let job = Job { incoming, done };
        let job = match queues.get(&chat) {
            Some(queue) => match queue.send(job) {
                Ok(()) => return handled,
                // The worker is gone (its handler panicked): start another.
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (queue, jobs) = mpsc::unbounded_channel();
        // The receiver is alive: it is right here.
        let _ = queue.send(job);
        queues.insert(chat, queue);
        drop(queues);
        tokio::spawn(self.clone().work(chat, jobs));
        handled
    }

    async fn work(self: Arc<Self>, chat: ChatId, mut jobs: mpsc::UnboundedReceiver<Job>) {
        loop {
            let job = {
                let mut queues = self.queues();
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(_) => {
                        queues.remove(&chat);
                        return;
                    }
                }
            };
            // Its own task, so a panic in one update neither kills the lane nor the rest.
            let handling = tokio::spawn((self.handler)(job.incoming));
            if let Err(error) = handling.await {
                tracing::error!(chat = chat.0, %error, "handling a Telegram update panicked");
            }
            let _ = job.done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::channels::telegram::update::Request;

    fn incoming(chat: i64, n: usize) -> Incoming {
        Incoming {
            chat: ChatId(chat),
            source_id: format!("m{n}"),
            album: None,
            request: Request::Welcome,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_chat_in_order_chats_in_parallel() {
        let seen: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
        let record = seen.clone();
        let lanes = Lanes::new(Arc::new(move |incoming: Incoming| {
            let record = record.clone();
            Box::pin(async move {
                // The slow chat must hold up neither its own order nor the fast chat.
                if incoming.chat.0 == 1 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                record
                    .lock()
                    .unwrap()
                    .push((incoming.chat.0, incoming.source_id));
            })
        }));
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
        // The fast chat finished before the slow one got far.
        let first_slow = seen.iter().position(|(c, _)| *c == 1).unwrap();
        assert!(first_slow >= 4, "{seen:?}");
        // Idle workers retire.
        for _ in 0..100 {
            if lanes.queues().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("idle lanes are still there");
    }
}
