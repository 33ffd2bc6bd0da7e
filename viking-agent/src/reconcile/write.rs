//! Writing one service's entries in the order that keeps every intermediate state valid
//! for a concurrent `connect()` (see the module doc of `reconcile`), and undoing a write
//! that failed halfway.

use viking_common::{INLINE_SLOTS, ServiceKey, ServiceValue};

use super::{ApplyError, ApplyFailure, ApplyReport, CleanupStep, Installed, KernelWriter, LimitHit, service_key};
use crate::{dataplane::tables::TableError, model::Service};

/// Writes a service's slots and entry in the safe order. On a failure it puts back what it
/// changed (overwriting existing keys and deleting new ones cannot run out of room), so the
/// kernel keeps the old version, or no trace of a new service.
pub(super) fn write_service(
    kernel: &mut impl KernelWriter,
    service: &Service,
    service_id: u32,
    old: Option<&Installed>,
    new_ids: &[u32],
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    let key = service_key(&service.frontend, 0);
    let entry = ServiceValue::entry(service_id, new_ids, service.algorithm, service.affinity_secs)
        .ok_or(LimitHit::SlotsPerService)?;
    // (slot, what it held before): what to put back on failure.
    let mut undo: Vec<(u16, Option<u32>)> = Vec::new();
    let result = write_slots(kernel, service, entry, old, new_ids, &mut undo, report);
    if result.is_err() {
        for (slot, previous) in undo.into_iter().rev() {
            let rollback = match previous {
                Some(backend_id) => kernel.set_slot(key.with_slot(slot), ServiceValue::slot(service_id, backend_id)),
                None => kernel.delete_slot(&key.with_slot(slot)),
            };
            if let Err(error) = rollback {
                report.failed.push(cleanup(service, CleanupStep::RollBackSlot(slot), error));
            }
        }
        if old.is_none() {
            let _ = kernel.delete_slot(&key);
            let _ = kernel.delete_name(service_id);
        }
    }
    result
}

fn write_slots(
    kernel: &mut impl KernelWriter,
    service: &Service,
    entry: ServiceValue,
    old: Option<&Installed>,
    new_ids: &[u32],
    undo: &mut Vec<(u16, Option<u32>)>,
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    let key = service_key(&service.frontend, 0);
    let service_id = entry.service_id;
    match old {
        None => kernel.begin_service(service_id, &service.name)?,
        Some(old) if old.name != service.name => kernel.set_name(service_id, &service.name)?,
        Some(_) => {}
    }
    // Before slot 0 publishes a new service, so its first failures are judged by it.
    let outlier = service.outlier.policy();
    if old.is_none_or(|o| o.outlier != outlier) {
        kernel.set_outlier(service_id, outlier)?;
        report.writes += 1;
    }
    for (index, id) in new_ids.iter().enumerate() {
        let previous = old.and_then(|o| o.slots.get(index).copied().flatten());
        if previous != Some(*id) {
            let slot = (index + 1) as u16;
            kernel.set_slot(key.with_slot(slot), ServiceValue::slot(service_id, *id))?;
            undo.push((slot, previous));
            report.writes += 1;
        }
    }
    let old_count = old.map_or(0, |o| o.slots.len());
    // Slot 0 copies the first backend ids, so it changes with them too.
    let first_ids_changed = |o: &Installed| {
        !o.slots.iter().take(INLINE_SLOTS).copied().eq(new_ids.iter().take(INLINE_SLOTS).map(|id| Some(*id)))
    };
    let entry_changed = |o: &Installed| {
        o.slots.len() != new_ids.len()
            || o.algorithm != service.algorithm
            || o.affinity_secs != service.affinity_secs
            || first_ids_changed(o)
    };
    if old.is_none_or(entry_changed) {
        // The last write that can fail: after it, the new version is published.
        kernel.set_slot(key, entry)?;
        report.writes += 1;
    }
    undo.clear();
    for slot in new_ids.len() + 1..=old_count {
        // Deleting cannot run out of room; a failure leaves an unreachable slot (past the
        // count), which the next adoption removes.
        let slot = slot as u16;
        if let Err(error) = kernel.delete_slot(&key.with_slot(slot)) {
            report.failed.push(cleanup(service, CleanupStep::DeleteSurplusSlot(slot), error));
        }
        report.writes += 1;
    }
    Ok(())
}

/// A clean-up failure of `service`.
pub(super) fn cleanup(service: &Service, step: CleanupStep, error: TableError) -> ApplyFailure {
    ApplyFailure::Cleanup { name: service.name.to_string(), frontend: service.frontend, step, error }
}

/// Rewrites an adopted service entry whose copy of the first backend ids disagrees with
/// its slots (an agent stopped between writing a slot and publishing the entry). A slot
/// that is missing is left to the next apply, which rewrites it and then the entry.
pub(super) fn repair_first_backends(
    kernel: &mut impl KernelWriter,
    key: ServiceKey,
    entry: ServiceValue,
    slots: &[Option<u32>],
) -> Result<(), TableError> {
    let Some(first) = slots.iter().take(INLINE_SLOTS).copied().collect::<Option<Vec<u32>>>() else {
        return Ok(());
    };
    let first_backends = ServiceValue::first_backends_of(&first);
    if entry.first_backends == first_backends {
        return Ok(());
    }
    kernel.set_slot(key, ServiceValue { first_backends, ..entry })
}
