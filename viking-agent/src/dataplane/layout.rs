//! What the dataplane consists of: the pinned maps with their expected layouts, and the
//! programs with the hooks they attach to.

use viking_common::{
    layout::{MapSpec, Sizing},
    names,
};

use crate::model::Limits;

pub use viking_common::layout::PINNED_MAPS;

/// Entries of `spec`'s map under `limits`; `None` for maps whose size the kernel decides
/// (socket storage).
pub fn max_entries(spec: &MapSpec, limits: &Limits) -> Option<u32> {
    Some(match spec.sizing {
        Sizing::Services => limits.max_services,
        Sizing::Backends => limits.max_backends,
        Sizing::ServiceSlots => limits.max_service_slots,
        Sizing::RevNat => limits.max_rev_nat,
        Sizing::Affinity => limits.max_affinity,
        Sizing::RecentSockets => limits.max_recent_sockets,
        Sizing::Fixed(entries) => entries,
        Sizing::Kernel => return None,
    })
}

/// The program type of a cgroup hook. (The exact attach point, e.g. `connect4`, comes
/// from the program's ELF section.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// `cgroup/<connect|sendmsg|recvmsg|getpeername><4|6>`: socket address hooks.
    SockAddr,
    /// `cgroup/sock_release`: socket hooks.
    Sock,
    /// `sockops`: TCP events of the cgroup's sockets.
    SockOps,
}

/// A program and the kind of cgroup hook it attaches to.
#[derive(Debug)]
pub struct Hook {
    /// Program name in the object and file name under `<pin-dir>/links/`.
    pub program: &'static str,
    /// Its program type.
    pub kind: HookKind,
}

const fn sock_addr(program: &'static str) -> Hook {
    Hook { program, kind: HookKind::SockAddr }
}

/// Every program, in attach order: the release hook first, so no counted connection can
/// be released unseen; the outcome observer, so every redirected connect's end is seen;
/// then the translations back (replies, peer names) before the translations forward, so
/// every redirected socket finds its reverse path in place.
pub const HOOKS: [Hook; 10] = [
    Hook { program: names::PROG_SOCK_RELEASE, kind: HookKind::Sock },
    Hook { program: names::PROG_SOCK_OPS, kind: HookKind::SockOps },
    sock_addr(names::PROG_GETPEERNAME4),
    sock_addr(names::PROG_GETPEERNAME6),
    sock_addr(names::PROG_RECVMSG4),
    sock_addr(names::PROG_RECVMSG6),
    sock_addr(names::PROG_SENDMSG4),
    sock_addr(names::PROG_SENDMSG6),
    sock_addr(names::PROG_CONNECT4),
    sock_addr(names::PROG_CONNECT6),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::dataplane::object;

    /// Maps in the object that are not pinned: the audit ring buffer, aya-log's buffer and
    /// the compiler's data sections.
    fn unpinned(name: &str) -> bool {
        name == names::AUDIT_EVENTS || name == "AYA_LOGS" || name.starts_with('.')
    }

    #[test]
    fn the_built_object_has_exactly_the_maps_and_programs_of_the_layout() {
        let object = aya_obj::Object::parse(object::BYTES).expect("the embedded object parses");
        for spec in &PINNED_MAPS {
            let map = object.maps.get(spec.name).unwrap_or_else(|| panic!("{} is not in the object", spec.name));
            assert_eq!((map.key_size(), map.value_size()), (spec.key_size, spec.value_size), "{}", spec.name);
            let declared = max_entries(spec, &Limits::default());
            assert!(declared.is_none_or(|n| n == map.max_entries()), "{}: default size", spec.name);
        }
        let in_object: BTreeSet<&str> = object.maps.keys().map(String::as_str).filter(|n| !unpinned(n)).collect();
        let in_layout: BTreeSet<&str> = PINNED_MAPS.iter().map(|s| s.name).collect();
        assert_eq!(in_object, in_layout, "every map of the object is pinned, and only those");
        let programs: BTreeSet<&str> = object.programs.keys().map(String::as_str).collect();
        let hooks: BTreeSet<&str> = HOOKS.iter().map(|h| h.program).collect();
        assert!(hooks.is_subset(&programs), "every hook's program is in the object: {programs:?}");
    }
}
