//! `sock_ops`: how each redirected TCP connect ends, for outlier ejection (`health`).
//!
//! At `TCP_CONNECT_CB` a socket that connect redirected asks for state-change and
//! retransmission-timeout callbacks; every other socket asks for nothing and costs no more
//! callbacks. The outcome is the first of: established (success), `SYN_SENT -> CLOSE`
//! (refused or reset: failure), a second SYN retransmission timeout (failure). After it the
//! socket asks for nothing again, so an established connection never runs this program
//! per packet or per state change.

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_RTO_CB, BPF_SOCK_OPS_RTO_CB_FLAG, BPF_SOCK_OPS_STATE_CB,
        BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB, BPF_TCP_CLOSE, BPF_TCP_SYN_SENT,
    },
    macros::sock_ops,
    programs::SockOpsContext,
};

use crate::{health, sockets};

/// The callbacks a watched socket asks for.
const WATCH: u32 = BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTO_CB_FLAG;

/// Runs on TCP events of every socket of the cgroup. Never changes what TCP does.
#[sock_ops]
pub fn viking_sock_ops(ctx: SockOpsContext) -> u32 {
    observe(&ctx);
    1
}

fn observe(ctx: &SockOpsContext) {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            if sockets::lookup_ops(ctx).is_some() {
                // Other programs' flags stay. A failure only means this connect's outcome
                // is not counted.
                let _ = ctx.set_cb_flags((ctx.cb_flags() | WATCH) as i32);
            }
        }
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => settle(ctx, health::connect_succeeded),
        BPF_SOCK_OPS_STATE_CB => {
            if ctx.arg(0) == BPF_TCP_SYN_SENT && ctx.arg(1) == BPF_TCP_CLOSE {
                settle(ctx, health::connect_failed);
            }
        }
        BPF_SOCK_OPS_RTO_CB => {
            // The first argument counts the retransmissions so far: the first timeout (a
            // single lost SYN, 1 s in) is not yet a failure; the second (3 s in) is.
            // SAFETY: `ops` is the program's valid context; `state` is a readable field.
            if ctx.arg(0) >= 1 && unsafe { (*ctx.ops).state } == BPF_TCP_SYN_SENT {
                settle(ctx, health::connect_failed);
            }
        }
        _ => {}
    }
}

/// Reports the outcome of a watched socket once and stops watching it.
#[inline(always)]
fn settle(ctx: &SockOpsContext, report: fn(&viking_common::SocketState)) {
    if ctx.cb_flags() & WATCH == 0 {
        return;
    }
    let _ = ctx.set_cb_flags((ctx.cb_flags() & !WATCH) as i32);
    if let Some(state) = sockets::lookup_ops(ctx) {
        report(&state);
    }
}
