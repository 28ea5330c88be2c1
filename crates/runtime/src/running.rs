//! A service (or only its gRPC server) on a background task: where it listens, and a
//! graceful stop. Every service's `App::spawn` returns one, and so does
//! [`crate::GrpcServer::spawn`].

use std::future::Future;
use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The task ended without an answer (it panicked or was cancelled): why.
#[derive(Debug)]
pub struct TaskFailed(pub String);

/// A service running on a background task. Dropping the handle also stops it (in the
/// background; [`Running::stop`] waits for it).
///
/// `S` is what the service shares while it runs, for callers that watch it
/// ([`Running::state`]; churn-scoring: its consumer-group instance).
pub struct Running<E, S = ()> {
    addr: SocketAddr,
    state: S,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), E>>,
}

impl<E, S> std::fmt::Debug for Running<E, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<E: From<TaskFailed> + Send + 'static> Running<E> {
    /// Spawns `run_until(shutdown)`, which runs the service listening on `addr` until
    /// `shutdown` completes (on [`Running::stop`], or when the handle is dropped), then
    /// stops it gracefully. It may also end by itself, on a failure.
    pub fn spawn<Fut>(addr: SocketAddr, run_until: impl FnOnce(ShutdownSignal) -> Fut) -> Self
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_until(ShutdownSignal(stopped)));
        Self {
            addr,
            state: (),
            stop: Some(stop),
            task,
        }
    }
}

impl<E: From<TaskFailed> + Send + 'static, S> Running<E, S> {
    /// The same handle, sharing `state` with its holder.
    pub fn with_state<T>(mut self, state: T) -> Running<E, T> {
        Running {
            addr: self.addr,
            state,
            stop: self.stop.take(),
            task: self.task,
        }
    }

    /// What the service shares while it runs.
    pub fn state(&self) -> &S {
        &self.state
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, for gRPC clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: the service finishes its in-flight work and its own shutdown steps
    /// (within its grace period); returns how it went.
    pub async fn stop(mut self) -> Result<(), E> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        joined((&mut self.task).await)
    }

    /// Runs until `signal` completes, then stops gracefully; if the service ends first
    /// (it failed), returns how it ended.
    pub async fn until(mut self, signal: impl Future<Output = ()>) -> Result<(), E> {
        tokio::select! {
            () = signal => self.stop().await,
            ended = &mut self.task => joined(ended),
        }
    }

    /// [`Running::until`] SIGTERM or Ctrl-C: what a service binary does.
    pub async fn until_shutdown_signal(self) -> Result<(), E> {
        self.until(async {
            crate::shutdown_signal().await;
            tracing::info!("shutdown requested");
        })
        .await
    }
}

fn joined<E: From<TaskFailed>>(
    ended: Result<Result<(), E>, tokio::task::JoinError>,
) -> Result<(), E> {
    ended.map_err(|e| E::from(TaskFailed(e.to_string())))?
}

/// Completes when the [`Running`] handle asks the service to stop, or is dropped.
#[derive(Debug)]
pub struct ShutdownSignal(oneshot::Receiver<()>);

impl ShutdownSignal {
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, PartialEq)]
    enum Ended {
        Failed(&'static str),
        Task(String),
    }

    impl From<TaskFailed> for Ended {
        fn from(e: TaskFailed) -> Self {
            Ended::Task(e.0)
        }
    }

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[tokio::test]
    async fn stop_signals_the_task_and_returns_its_outcome() {
        let running = Running::spawn(addr(), |shutdown| async move {
            shutdown.wait().await;
            Err::<(), _>(Ended::Failed("stopped with an error"))
        })
        .with_state(7);
        assert_eq!(*running.state(), 7);
        assert_eq!(running.endpoint(), "http://127.0.0.1:1");
        assert_eq!(
            running.stop().await,
            Err(Ended::Failed("stopped with an error"))
        );
    }

    #[tokio::test]
    async fn until_returns_early_when_the_service_fails_by_itself() {
        let running = Running::spawn(addr(), |_shutdown| async {
            Err::<(), _>(Ended::Failed("broke"))
        });
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            running.until(std::future::pending()),
        )
        .await
        .expect("does not wait for a signal that never comes");
        assert_eq!(outcome, Err(Ended::Failed("broke")));
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported() {
        let running = Running::spawn(addr(), |shutdown| async move {
            shutdown.wait().await;
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<(), Ended>(())
        });
        match running.stop().await {
            Err(Ended::Task(why)) => assert!(why.contains("panic"), "{why}"),
            other => panic!("expected a task failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_service() {
        let (done, stopped) = oneshot::channel();
        let running = Running::spawn(addr(), |shutdown| async move {
            shutdown.wait().await;
            let _ = done.send(());
            Ok::<(), Ended>(())
        });
        drop(running);
        tokio::time::timeout(Duration::from_secs(5), stopped)
            .await
            .expect("stopped")
            .expect("the task saw the signal");
    }
}
