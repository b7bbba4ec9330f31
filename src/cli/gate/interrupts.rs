//! Ctrl-C and SIGTERM during a gate run: the drive is cancelled and the integration
//! stopped with it; once the drive is over, the process ends at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::exit::ExitCode;

/// Ctrl-C and SIGTERM for the length of a gate run, watched on a thread of their own
/// from before the drive: during the drive a signal cancels it; once the drive is
/// over it ends the process at once, as it would have had the drive not taken the
/// signals over (a handler, once installed, stays for the life of the process).
pub(super) struct Interrupts {
    /// Set by the watcher when a signal came.
    came: Arc<AtomicBool>,
    /// Set when the drive is over: a signal then ends the process.
    judging: Arc<AtomicBool>,
    /// Wakes the drive's `select!`.
    wake: Arc<tokio::sync::Notify>,
}

impl Interrupts {
    /// Starts the watcher and returns once its handlers are installed, so no signal
    /// falls between the default action and them; `None` if they could not be (the
    /// signals then keep their default action).
    pub(super) fn watch() -> Option<Self> {
        let interrupts = Interrupts {
            came: Arc::new(AtomicBool::new(false)),
            judging: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(tokio::sync::Notify::new()),
        };
        let (came, judging, wake) = (
            Arc::clone(&interrupts.came),
            Arc::clone(&interrupts.judging),
            Arc::clone(&interrupts.wake),
        );
        let (ready, installed) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    let _ = ready.send(false);
                    return;
                };
                runtime.block_on(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut interrupt), Ok(mut terminate)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        let _ = ready.send(false);
                        return;
                    };
                    let _ = ready.send(true);
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    // Both flags are sequentially consistent: either the drive's end
                    // sees `came`, or this sees `judging`.
                    came.store(true, Ordering::SeqCst);
                    if judging.load(Ordering::SeqCst) {
                        exit_interrupted();
                    }
                    wake.notify_one();
                });
            })
            .ok()?;
        installed
            .recv_timeout(Duration::from_secs(5))
            .ok()
            .filter(|ok| *ok)
            .map(|_| interrupts)
    }

    /// The next wave's drive begins: a signal cancels it, as during the first.
    pub(super) fn driving(&self) {
        self.judging.store(false, Ordering::SeqCst);
    }

    /// Resolves when a signal came during the drive; never without a watcher.
    pub(super) async fn during_drive(interrupts: Option<&Self>) {
        match interrupts {
            // `notify_one` leaves a permit when nothing waits yet.
            Some(interrupts) => interrupts.wake.notified().await,
            None => std::future::pending().await,
        }
    }

    /// The drive is over: from now on a signal ends the process at once, and one that
    /// came as the drive ended ends it now.
    pub(super) fn judging(&self) {
        self.judging.store(true, Ordering::SeqCst);
        if self.came.load(Ordering::SeqCst) {
            exit_interrupted();
        }
    }
}

/// Ends the process on a signal that came after the drive: the integration is already
/// stopped, and the judge runs on plain threads.
fn exit_interrupted() -> ! {
    eprintln!(
        "error: interrupted while judging: no verdict, and the reports may be missing or \
         partial"
    );
    std::process::exit(ExitCode::Interrupted.code());
}
