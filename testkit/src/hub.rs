//! Running futures inside a network namespace.
//!
//! The test process lives in the root namespace and must not add addresses there; to talk to
//! an agent that listens inside a region namespace it runs the request on a thread that
//! `setns`'d into a namespace. [`NsThread`] is such a thread, kept for the topology's lifetime,
//! with its own current-thread tokio runtime: every socket a job creates (and every task it
//! spawns, which runs on the same thread) lives in that namespace.

use std::future::Future;
use std::pin::Pin;

use anyhow::{anyhow, Context as _};
use tokio::sync::{mpsc, oneshot};

use crate::netns::Netns;

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A thread inside a namespace that runs jobs (closures returning futures) on a
/// current-thread runtime, concurrently; stopped and joined on drop, which cancels its tasks.
#[derive(Debug)]
pub struct NsThread {
    name: String,
    jobs: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsThread {
    /// Starts the thread and waits until it is inside `ns`.
    pub fn start(ns: &Netns) -> anyhow::Result<Self> {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let path_ns = Netns::path(ns);
        let name = ns.name().to_owned();
        let thread_name = format!("ns-{name}");
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let setup = crate::netns::enter_path(&path_ns).and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("building the namespace thread's runtime")
                });
                let rt = match setup {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        rt
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    while let Some(job) = rx.recv().await {
                        tokio::task::spawn_local(job());
                    }
                });
            })
            .context("spawning a namespace thread")?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("namespace thread for {name} died while starting"))??;
        Ok(Self {
            name,
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f()` inside the namespace and returns its output. The future need not be `Send`.
    pub async fn run<F, Fut, T>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.spawn(move || async move {
            let _ = tx.send(f().await);
        })?;
        rx.await
            .map_err(|_| anyhow!("namespace thread {} dropped a job", self.name))
    }

    /// Starts `f()` inside the namespace without waiting for it; it runs until it ends or the
    /// thread stops.
    pub fn spawn<F, Fut>(&self, f: F) -> anyhow::Result<()>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job: Job = Box::new(move || Box::pin(f()));
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| anyhow!("namespace thread {} has stopped", self.name))
    }
}

impl Drop for NsThread {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `f()` on a fresh thread inside `ns` (for one-off work without a [`NsThread`]).
pub async fn run_in<F, Fut, T>(ns: &Netns, f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let thread = NsThread::start(ns)?;
    let out = thread.run(f).await;
    // Joining blocks this thread briefly; do it off the async worker.
    let _ = tokio::task::spawn_blocking(move || drop(thread)).await;
    out
}
