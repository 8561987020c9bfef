//! LISTEN/NOTIFY: one connection per store that listens, and hands each notification to the
//! watchers of the rollout it names.
//!
//! Two channels: `cutover_inbox` (payload: a rollout id) when a command is queued, and
//! `cutover_fleet` when a rollout becomes claimable (submitted, released). A notification sent
//! while the listening connection is down is lost, so after every (re)connection every watcher
//! is woken once: the engines read their inboxes and the workers claim, as if notified.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cutover_core::RolloutId;
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{debug, warn};

/// The channel of queued commands.
pub(crate) const INBOX_CHANNEL: &str = "cutover_inbox";
/// The channel of claimable rollouts.
pub(crate) const FLEET_CHANNEL: &str = "cutover_fleet";

#[derive(Debug)]
pub(crate) struct Listener {
    inboxes: Mutex<Watchers>,
    fleet: watch::Sender<u64>,
    listening: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Watchers {
    by_id: HashMap<RolloutId, watch::Sender<u64>>,
    /// Forget rollouts nobody watches once the map grows past this.
    sweep_at: usize,
}

fn bump(sender: &watch::Sender<u64>) {
    sender.send_modify(|v| *v = v.wrapping_add(1));
}

impl Listener {
    /// Starts listening on a connection of its own, made from `config`.
    pub(crate) fn start(config: tokio_postgres::Config) -> Arc<Self> {
        let listener = Arc::new(Listener {
            inboxes: Mutex::new(Watchers {
                by_id: HashMap::new(),
                sweep_at: 1024,
            }),
            fleet: watch::Sender::new(0),
            listening: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(listen(config, Arc::downgrade(&listener)));
        *listener.task.lock() = Some(task);
        listener
    }

    /// Changes whenever a command is queued for `id`. It starts out changed: commands queued
    /// before the watch began (while no engine ran the rollout, or before a takeover) are
    /// read at once, not at the next notification.
    pub(crate) fn watch(&self, id: &RolloutId) -> watch::Receiver<u64> {
        let mut receiver = self.subscribe(id);
        receiver.mark_changed();
        receiver
    }

    fn subscribe(&self, id: &RolloutId) -> watch::Receiver<u64> {
        let mut watchers = self.inboxes.lock();
        if let Some(sender) = watchers.by_id.get(id) {
            return sender.subscribe();
        }
        if watchers.by_id.len() >= watchers.sweep_at {
            watchers.by_id.retain(|_, s| s.receiver_count() > 0);
            watchers.sweep_at = (watchers.by_id.len() * 2).max(1024);
        }
        let (sender, receiver) = watch::channel(0);
        watchers.by_id.insert(id.clone(), sender);
        receiver
    }

    /// Changes whenever a rollout may have become claimable.
    pub(crate) fn fleet(&self) -> watch::Receiver<u64> {
        self.fleet.subscribe()
    }

    /// Wakes the watchers of `id` in this process (a command was queued through this store).
    pub(crate) fn inbox_changed(&self, id: &RolloutId) {
        if let Some(sender) = self.inboxes.lock().by_id.get(id) {
            bump(sender);
        }
    }

    /// Wakes the workers of this process (a rollout was submitted or released through it).
    pub(crate) fn fleet_changed(&self) {
        bump(&self.fleet);
    }

    /// Whether the listening connection is up.
    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    fn dispatch(&self, channel: &str, payload: &str) {
        match channel {
            INBOX_CHANNEL => {
                if let Ok(id) = RolloutId::new(payload) {
                    self.inbox_changed(&id);
                }
            }
            FLEET_CHANNEL => self.fleet_changed(),
            _ => {}
        }
    }

    fn wake_all(&self) {
        for sender in self.inboxes.lock().by_id.values() {
            bump(sender);
        }
        self.fleet_changed();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

/// Connects, listens and dispatches until the store is dropped; reconnects with back-off.
async fn listen(config: tokio_postgres::Config, listener: Weak<Listener>) {
    const FIRST_DELAY: Duration = Duration::from_millis(100);
    const MAX_DELAY: Duration = Duration::from_secs(5);
    let mut delay = FIRST_DELAY;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let messages = tokio::spawn(async move {
                    let mut stream =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = stream.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if tx.send(n).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                debug!(error = %e, "listening connection ended");
                                break;
                            }
                        }
                    }
                });
                let listening = client
                    .batch_execute(&format!("LISTEN {INBOX_CHANNEL}; LISTEN {FLEET_CHANNEL}"))
                    .await;
                match listening {
                    Ok(()) => {
                        let Some(me) = listener.upgrade() else {
                            messages.abort();
                            return;
                        };
                        delay = FIRST_DELAY;
                        me.listening.store(true, Ordering::Relaxed);
                        me.wake_all();
                        drop(me);
                        while let Some(n) = rx.recv().await {
                            let Some(me) = listener.upgrade() else {
                                messages.abort();
                                return;
                            };
                            me.dispatch(n.channel(), n.payload());
                        }
                        if let Some(me) = listener.upgrade() {
                            me.listening.store(false, Ordering::Relaxed);
                        }
                        warn!("lost the LISTEN connection; reconnecting");
                    }
                    Err(e) => warn!(error = %e, "LISTEN failed; retrying"),
                }
                messages.abort();
            }
            Err(e) => debug!(error = %e, "cannot open the LISTEN connection; retrying"),
        }
        if listener.strong_count() == 0 {
            return;
        }
        let jitter = delay.mul_f64(fastrand::f64() * 0.2);
        tokio::time::sleep(delay + jitter).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}
