//! A gRPC server running on a background task (tests, benchmarks, embedding): where it
//! listens, and a graceful stop. Every service's `spawn` returns one.

use std::future::Future;
use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The server task ended without an answer (it panicked or was cancelled): why.
#[derive(Debug)]
pub struct TaskFailed(pub String);

/// A server on a background task. Dropping it also stops the server.
#[derive(Debug)]
pub struct Serving<E> {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), E>>,
}

impl<E: From<TaskFailed> + Send + 'static> Serving<E> {
    /// Spawns `run_until(shutdown)`, which serves on `addr` until `shutdown` completes:
    /// on [`Serving::stop`], or when the handle is dropped.
    pub fn spawn<Fut>(addr: SocketAddr, run_until: impl FnOnce(ShutdownSignal) -> Fut) -> Self
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_until(ShutdownSignal(stopped)));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, for gRPC clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown: the server finishes its in-flight calls and its own shutdown
    /// steps; returns how it went.
    pub async fn stop(mut self) -> Result<(), E> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .map_err(|e| E::from(TaskFailed(e.to_string())))?
    }
}

/// Completes when the [`Serving`] handle asks the server to stop or is dropped.
#[derive(Debug)]
pub struct ShutdownSignal(oneshot::Receiver<()>);

impl ShutdownSignal {
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}
