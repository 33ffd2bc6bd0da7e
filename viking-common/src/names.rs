//! Names of the maps and programs, shared by the kernel object and the agent, and used as
//! file names under the pin directory.

/// `SERVICES`: frontend slots -> service entry / backend ids.
pub const SERVICES: &str = "VIKING_SERVICES";
/// `BACKENDS`: backend id -> address.
pub const BACKENDS: &str = "VIKING_BACKENDS";
/// `RR_CURSORS`: service id -> round-robin cursor.
pub const RR_CURSORS: &str = "VIKING_RR_CURSORS";
/// `SERVICE_STATS`: service id -> per-CPU counters.
pub const SERVICE_STATS: &str = "VIKING_SERVICE_STATS";

/// `SERVICE_NAMES`: service id -> name (agent only).
pub const SERVICE_NAMES: &str = "VIKING_SERVICE_NAMES";

/// The `cgroup/connect4` program.
pub const PROG_CONNECT4: &str = "viking_connect4";
