//! Reading the kernel's reports of undeclared VIP connects (`AUDIT_EVENTS`).

use aya::{
    Ebpf,
    maps::{MapData, MapError, RingBuf},
};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use viking_common::{AuditEvent, names};

/// Why audit records cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The loaded object has no `AUDIT_EVENTS` map (or it was taken before).
    #[error("audit ring buffer missing from the object")]
    Missing,
    /// The map is not a usable ring buffer.
    #[error(transparent)]
    Map(#[from] MapError),
}

/// Forwards audit records to `tx` until the receiver is gone. When the run loop falls
/// behind, records are dropped here (as the kernel drops them when nobody reads), never
/// queued without bound.
pub fn forward(ebpf: &mut Ebpf, tx: mpsc::Sender<AuditEvent>) -> Result<(), AuditError> {
    let map = ebpf.take_map(names::AUDIT_EVENTS).ok_or(AuditError::Missing)?;
    let ring = RingBuf::<MapData>::try_from(map)?;
    let task = async move {
        // SAFETY: the ring buffer owns its fd, which stays open and unchanged until the
        // ring buffer (moved into the AsyncFd) is dropped.
        let registered = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
        let Ok(mut fd) = registered else {
            tracing::warn!("audit events unavailable: cannot poll the ring buffer");
            return;
        };
        loop {
            let Ok(mut guard) = fd.readable_mut().await else { return };
            let ring = guard.get_inner_mut();
            while let Some(record) = ring.next() {
                if let Some(event) = decode(&record) {
                    match tx.try_send(event) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
            }
            guard.clear_ready();
        }
    };
    tokio::spawn(task);
    Ok(())
}

/// Copies a record into an [`AuditEvent`]; `None` for a record shorter than one.
fn decode(bytes: &[u8]) -> Option<AuditEvent> {
    if bytes.len() < size_of::<AuditEvent>() {
        return None;
    }
    // SAFETY: AuditEvent is plain old data of integers; the slice holds at least that many
    // bytes; read_unaligned does not require alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<AuditEvent>()) })
}
