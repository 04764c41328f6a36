//! Wakes from other threads, handed to an I/O thread in batches.
//!
//! A task on an I/O thread is woken from another thread when the store's
//! committer acknowledges its write, or when a task of the other I/O thread
//! queues a message for it. Tokio answers each such wake with a write to the
//! thread's `eventfd`, a system call, whether the thread sleeps or is busy:
//! about one per execution at 32 connections (`bench/README.md`).
//!
//! Tasks started with [`spawn`] (or wrapped in [`Relayed`]) are polled with a
//! waker that, called from another thread, leaves the wake in their thread's
//! [`Mailbox`] instead. The thread delivers its mail whenever one of these
//! tasks is polled, and before it sleeps. Only a wake that finds the thread
//! asleep, or about to sleep, wakes it through Tokio, and only the first
//! until it is awake again: it wakes the thread's [`watch`](Mailbox::watch),
//! which never ends, so the thread always wakes (the task a wake was meant
//! for may have ended meanwhile, and waking it would wake nobody).

use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_util::task::{ArcWake, AtomicWaker, waker_ref};

/// The thread runs, and will look at its mail before it sleeps.
const AWAKE: u8 = 0;
/// The thread sleeps, or is about to: a wake must wake it.
const PARKED: u8 = 1;
/// The thread sleeps and was woken: it will look at its mail.
const NUDGED: u8 = 2;

/// One I/O thread's incoming wakes.
pub(crate) struct Mailbox {
    mail: Mutex<Mail>,
    /// Whether `mail` holds a waker: read without the lock.
    has_mail: AtomicBool,
    /// [`AWAKE`], [`PARKED`] or [`NUDGED`].
    state: AtomicU8,
    /// Wakes the thread's [`watch`](Mailbox::watch).
    watcher: AtomicWaker,
    /// How many times a wake woke the thread.
    #[cfg(test)]
    nudges: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Mail {
    wakers: Vec<Waker>,
    /// The thread is gone: wakes go straight to their task.
    closed: bool,
}

thread_local! {
    /// The mailbox of the I/O thread this is, if it is one.
    static HOME: OnceCell<Arc<Mailbox>> = const { OnceCell::new() };
    /// The delivered wakers' vector, kept for its capacity.
    static SPARE: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

fn lock(mail: &Mutex<Mail>) -> MutexGuard<'_, Mail> {
    mail.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Mailbox {
    /// A mailbox for a thread that is awake.
    pub(crate) fn new() -> Arc<Mailbox> {
        Arc::new(Mailbox {
            mail: Mutex::new(Mail::default()),
            has_mail: AtomicBool::new(false),
            state: AtomicU8::new(AWAKE),
            watcher: AtomicWaker::new(),
            #[cfg(test)]
            nudges: Default::default(),
        })
    }

    /// Make `self` the mailbox of the calling thread (once per thread).
    pub(crate) fn make_home(self: &Arc<Self>) {
        HOME.with(|home| {
            let _ = home.set(self.clone());
        });
    }

    /// Leave `task`'s wake here (from another thread); wake the thread if it
    /// sleeps.
    fn post(&self, task: &Waker) {
        {
            let mut mail = lock(&self.mail);
            if mail.closed {
                drop(mail);
                return task.wake_by_ref();
            }
            mail.wakers.push(task.clone());
            self.has_mail.store(true, Ordering::SeqCst);
        }
        // Read after the waker is in (the other half is in `parking`): either
        // the thread sees the mail before it sleeps, or this sees it asleep.
        if self
            .state
            .compare_exchange(PARKED, NUDGED, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            #[cfg(test)]
            self.nudges.fetch_add(1, Ordering::Relaxed);
            self.watcher.wake();
        }
    }

    /// Wake, on this thread, every task whose wake was left here.
    fn deliver(&self) {
        let mut wakers = SPARE.take();
        {
            let mut mail = lock(&self.mail);
            std::mem::swap(&mut mail.wakers, &mut wakers);
            self.has_mail.store(false, Ordering::Relaxed);
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
        SPARE.set(wakers);
    }

    /// [`deliver`](Mailbox::deliver), if there is mail.
    fn deliver_any(&self) {
        if self.has_mail.load(Ordering::SeqCst) {
            self.deliver();
        }
    }

    /// The thread is about to sleep (Tokio's `on_thread_park`). A task woken
    /// here keeps it from sleeping.
    pub(crate) fn parking(&self) {
        self.state.store(PARKED, Ordering::SeqCst);
        self.deliver_any();
    }

    /// The thread woke (Tokio's `on_thread_unpark`).
    pub(crate) fn awake(&self) {
        self.state.store(AWAKE, Ordering::SeqCst);
    }

    /// Run on the thread beside its tasks (it never ends): what wakes it when
    /// it sleeps with mail, and delivers the mail.
    pub(crate) async fn watch(&self) {
        std::future::poll_fn(|cx| {
            self.watcher.register(cx.waker());
            self.deliver_any();
            Poll::<()>::Pending
        })
        .await
    }

    /// The thread is ending: wake whatever is left, and every later wake
    /// directly.
    pub(crate) fn close(&self) {
        let wakers = {
            let mut mail = lock(&self.mail);
            mail.closed = true;
            self.has_mail.store(false, Ordering::Relaxed);
            std::mem::take(&mut mail.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// Deliver the calling I/O thread's mail, if it has any.
pub(crate) fn deliver_here() {
    HOME.with(|home| {
        if let Some(home) = home.get() {
            home.deliver_any();
        }
    });
}

/// A task's waker as its thread's tasks get it: direct on the thread, through
/// the mailbox from elsewhere.
struct Relay {
    home: Arc<Mailbox>,
    task: Waker,
}

impl ArcWake for Relay {
    fn wake_by_ref(relay: &Arc<Self>) {
        let at_home = HOME
            .try_with(|home| home.get().is_some_and(|home| Arc::ptr_eq(home, &relay.home)))
            .unwrap_or(false);
        if at_home {
            relay.task.wake_by_ref();
        } else {
            relay.home.post(&relay.task);
        }
    }
}

pin_project_lite::pin_project! {
    /// A future whose wakes from other threads go through its I/O thread's
    /// mailbox (see the module's doc). Off the I/O threads, it is `future`.
    pub(crate) struct Relayed<F> {
        #[pin]
        future: F,
        relay: Option<Arc<Relay>>,
    }
}

impl<F> Relayed<F> {
    /// Wrap `future`.
    pub(crate) fn new(future: F) -> Relayed<F> {
        Relayed { future, relay: None }
    }
}

impl<F: Future> Future for Relayed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        HOME.with(|home| {
            let Some(home) = home.get() else {
                return this.future.poll(cx);
            };
            home.deliver_any();
            let current = this
                .relay
                .as_ref()
                .is_some_and(|relay| Arc::ptr_eq(&relay.home, home) && relay.task.will_wake(cx.waker()));
            if !current {
                *this.relay = Some(Arc::new(Relay {
                    home: home.clone(),
                    task: cx.waker().clone(),
                }));
            }
            let relay = this.relay.as_ref().expect("set above");
            let waker = waker_ref(relay);
            this.future.poll(&mut Context::from_waker(&waker))
        })
    }
}

/// `tokio::spawn`, with the task's wakes [`Relayed`].
pub(crate) fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(Relayed::new(future))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::super::shard::Shards;
    use super::*;

    /// Spawned on the I/O thread: its mailbox.
    async fn home() -> Arc<Mailbox> {
        HOME.with(|home| home.get().cloned()).expect("on an I/O thread")
    }

    /// `rounds` times, asks `helper` (another thread) for a value and waits
    /// for it: each answer is a wake from that thread. Their sum.
    async fn ask(helper: std::sync::mpsc::Sender<oneshot::Sender<u32>>, rounds: u32) -> u32 {
        let mut sum = 0;
        for _ in 0..rounds {
            let (tx, rx) = oneshot::channel();
            helper.send(tx).expect("the helper runs");
            sum += rx.await.expect("the helper answers");
        }
        sum
    }

    /// A thread answering 1 to every request, after `pause(n)` for the n-th.
    fn helper(pause: fn(u32) -> Duration) -> std::sync::mpsc::Sender<oneshot::Sender<u32>> {
        let (tx, requests) = std::sync::mpsc::channel::<oneshot::Sender<u32>>();
        std::thread::spawn(move || {
            for (n, answer) in (0..).zip(requests) {
                std::thread::sleep(pause(n));
                let _ = answer.send(1);
            }
        });
        tx
    }

    /// Runs `future` to its end, or fails after a minute: a lost wake hangs.
    fn finish<T>(future: impl Future<Output = T>) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), future).await })
            .expect("a wake was lost: the task never finished")
    }

    #[test]
    fn wakes_from_another_thread_reach_an_io_thread_whether_it_sleeps_or_not() {
        let shards = Shards::start(1, false).unwrap();
        let io = shards.next();
        let mailbox = finish(io.spawn(home())).unwrap();
        // Answers now at once (the thread may still be awake), now after a
        // pause in which it went to sleep.
        let helper = helper(|n| Duration::from_micros(if n % 3 == 0 { 300 } else { 0 }));
        let rounds = 6_000;
        let sum = finish(io.spawn(Relayed::new(ask(helper, rounds)))).unwrap();
        assert_eq!(sum, rounds);
        let nudges = mailbox.nudges.load(Ordering::Relaxed);
        assert!(
            nudges >= u64::from(rounds / 3),
            "a sleeping thread was woken {nudges} times"
        );
        assert!(!mailbox.has_mail.load(Ordering::Relaxed));
    }

    #[test]
    fn a_sleeping_thread_wakes_even_when_the_first_wake_is_for_an_ended_task() {
        let shards = Shards::start(1, false).unwrap();
        let io = shards.next();
        // A task that keeps its waker and ends.
        let kept = Arc::new(Mutex::new(None::<Waker>));
        finish(io.spawn(Relayed::new({
            let kept = kept.clone();
            std::future::poll_fn(move |cx| {
                *kept.lock().unwrap() = Some(cx.waker().clone());
                Poll::Ready(())
            })
        })))
        .unwrap();
        let (tx, rx) = oneshot::channel::<u32>();
        let waiting = io.spawn(Relayed::new(rx));
        // Let the thread go to sleep, then wake the ended task first: that
        // wake is the one that finds the thread asleep.
        std::thread::sleep(Duration::from_millis(50));
        kept.lock().unwrap().take().expect("kept").wake();
        tx.send(7).unwrap();
        assert_eq!(finish(waiting).unwrap(), Ok(7));
    }

    #[test]
    fn a_busy_io_thread_takes_its_mail_without_being_woken() {
        let shards = Shards::start(1, false).unwrap();
        let io = shards.next();
        let mailbox = finish(io.spawn(home())).unwrap();
        // A task that keeps the thread busy: it yields, so Tokio never sleeps.
        let spinning = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = io.spawn(Relayed::new({
            let (spinning, stop) = (spinning.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    spinning.store(true, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        }));
        while !spinning.load(Ordering::Relaxed) {
            std::thread::yield_now();
        }
        let before = mailbox.nudges.load(Ordering::Relaxed);
        let rounds = 20_000;
        let sum = finish(io.spawn(Relayed::new(ask(helper(|_| Duration::ZERO), rounds)))).unwrap();
        assert_eq!(sum, rounds);
        assert_eq!(
            mailbox.nudges.load(Ordering::Relaxed),
            before,
            "every wake was delivered by the busy thread itself"
        );
        stop.store(true, Ordering::Relaxed);
        finish(spinner).unwrap();
    }

    #[test]
    fn mail_that_comes_while_the_thread_works_is_delivered_before_it_sleeps() {
        let shards = Shards::start(1, false).unwrap();
        let io = shards.next();
        let helper = helper(|_| Duration::from_micros(50));
        let rounds = 2_000;
        let answered_meanwhile = finish(io.spawn(Relayed::new(async move {
            let mailbox = home().await;
            let mut meanwhile = 0;
            for _ in 0..rounds {
                let (tx, mut rx) = oneshot::channel::<u32>();
                helper.send(tx).expect("the helper runs");
                let mut waited = false;
                std::future::poll_fn(|cx| {
                    let answer = Pin::new(&mut rx).poll(cx);
                    if answer.is_pending() && !waited {
                        // Keep the thread working until the answer's wake is
                        // in the mailbox; then nothing runs before it sleeps.
                        waited = true;
                        let until = std::time::Instant::now() + Duration::from_millis(100);
                        while !mailbox.has_mail.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                            std::thread::yield_now();
                        }
                        meanwhile += u32::from(mailbox.has_mail.load(Ordering::SeqCst));
                    }
                    answer
                })
                .await
                .expect("the helper answers");
            }
            meanwhile
        })))
        .unwrap();
        assert!(
            answered_meanwhile > rounds / 4,
            "only {answered_meanwhile} of {rounds} answers came while the thread worked"
        );
    }

    #[test]
    fn a_wake_on_the_thread_itself_goes_straight_to_the_task() {
        let shards = Shards::start(1, false).unwrap();
        let io = shards.next();
        let posted = finish(io.spawn(Relayed::new(async {
            let mailbox = home().await;
            // A yield: the task wakes its own waker.
            let mut posted = None;
            std::future::poll_fn(|cx| {
                if posted.is_some() {
                    return Poll::Ready(());
                }
                cx.waker().wake_by_ref();
                posted = Some(mailbox.has_mail.load(Ordering::Relaxed));
                Poll::Pending
            })
            .await;
            posted
        })))
        .unwrap();
        assert_eq!(
            posted,
            Some(false),
            "a wake on the task's own thread went through the mailbox"
        );
    }
}
