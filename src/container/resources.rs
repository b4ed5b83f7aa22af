//! What a container gets: the VM's vCPUs and memory, and the limits its processes
//! get inside the guest, from Docker's flags.
//!
//! Docker gives a container every CPU and all memory of the host unless told
//! otherwise, and `--memory`, `--cpus`, `--pids-limit` are cgroup limits. hull does
//! the same inside the VM:
//! - the VM has as many vCPUs as the host has CPUs (an idle vCPU costs nothing), or
//!   `--cpus` rounded up, with a fractional `--cpus` a `cpu.max` quota on top;
//! - the VM's memory is [`DEFAULT_MEMORY_MIB`], backed only where the guest touches
//!   it and handed back when the guest frees it (virtio-balloon free page
//!   reporting). It is not the host's whole memory because the guest kernel keeps a
//!   64-byte page descriptor for every 4 KiB of it (1.6 %), touched at boot: 1 GiB
//!   costs an idle container 16 MiB of host memory, the host's 64 GiB would cost 1 GiB;
//! - `--memory` is the container cgroup's `memory.max`, and the VM gets that much
//!   plus room for the guest's own kernel ([`vm_memory_for`]), so a container that
//!   allocates beyond its limit meets the guest's OOM killer exactly at the limit.

use guest_agent::protocol::{valid_cpu_list, Resources, CPU_PERIOD_US};
use thiserror::Error;

use super::spec::parse_size;

/// VM memory without `--memory`.
pub const DEFAULT_MEMORY_MIB: u32 = 1024;
/// The VMM's limits (`vmm/src/memory.rs`, `NR_CPUS` of the guest kernel).
pub const MAX_VM_MEMORY_MIB: u64 = 64 << 10;
pub const MAX_VCPUS: u32 = 64;
/// Docker's smallest `--memory`.
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;
/// The guest kernel's `PID_MAX_LIMIT`: `pids.max` takes no more.
pub const MAX_PIDS: i64 = 4 << 20;
/// Docker's `/dev/shm` without `--shm-size`.
pub const DEFAULT_SHM_BYTES: u64 = 64 << 20;

/// The resource flags of `create` and `run`, as typed.
#[derive(Debug, Clone, Default)]
pub struct ResourceFlags {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<f64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub shm_size: Option<String>,
}

/// What the container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub vm_memory_mib: u32,
    pub vcpus: u8,
    /// `--cpus` in billionths of a CPU (Docker's `NanoCpus`), 0 when not given.
    pub nano_cpus: u64,
    pub limits: Resources,
}

/// A flag's value out of range; Docker's wording where Docker has one.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error("invalid {flag} {value:?}: use a number with b, k, m or g")]
    Size { flag: &'static str, value: String },
    #[error("Minimum memory limit allowed is 6MB")]
    MemoryTooSmall,
    #[error("--memory {0:?} is more than a VM can have ({MAX_VM_MEMORY_MIB} MiB with the guest kernel's room)")]
    MemoryTooLarge(String),
    #[error("You should always set the Memory limit when using Memoryswap limit, see usage")]
    SwapWithoutMemory,
    #[error("Minimum memoryswap limit should be larger than memory limit, see usage")]
    SwapBelowMemory,
    #[error("range of CPUs is from 0.01 to {host}.00, as there are only {host} CPUs available")]
    Cpus { host: u32 },
    #[error("Requested CPUs are not available - requested {requested}, available: 0-{last}")]
    Cpuset { requested: String, last: u32 },
    #[error("invalid --pids-limit {0}: use -1 (or 0) for no limit, or at most {MAX_PIDS}")]
    Pids(i64),
    #[error("invalid --shm-size {0:?}: it must be more than 0 and at most 64 GiB")]
    Shm(String),
}

/// Decides the VM's size and the container's limits on a host with `host_cpus` CPUs.
pub fn plan(flags: &ResourceFlags, host_cpus: u32) -> Result<Plan, ResourceError> {
    let host_cpus = host_cpus.clamp(1, MAX_VCPUS);
    let (vcpus, nano_cpus, cpu_quota) = cpus(flags.cpus, host_cpus)?;
    let mut limits = Resources {
        cpu_quota,
        ..Resources::default()
    };
    let vm_memory_mib = match &flags.memory {
        None => DEFAULT_MEMORY_MIB,
        Some(text) => {
            let bytes = size("--memory", text)?;
            if bytes < MIN_MEMORY_BYTES {
                return Err(ResourceError::MemoryTooSmall);
            }
            limits.memory = Some(bytes);
            vm_memory_for(bytes).ok_or_else(|| ResourceError::MemoryTooLarge(text.clone()))?
        }
    };
    limits.swap = swap(flags.memory_swap.as_deref(), limits.memory)?;
    if let Some(list) = &flags.cpuset_cpus {
        if !valid_cpu_list(list, vcpus) {
            return Err(ResourceError::Cpuset {
                requested: list.chars().take(64).collect(),
                last: vcpus - 1,
            });
        }
        limits.cpuset = Some(list.clone());
    }
    limits.pids = match flags.pids_limit {
        None | Some(0) | Some(-1) => None,
        Some(n @ 1..=MAX_PIDS) => Some(n as u64),
        Some(n) => return Err(ResourceError::Pids(n)),
    };
    limits.shm = match &flags.shm_size {
        None => None,
        Some(text) => match size("--shm-size", text)? {
            n @ 1..=0x10_0000_0000 => Some(n),
            _ => return Err(ResourceError::Shm(text.clone())),
        },
    };
    Ok(Plan {
        vm_memory_mib,
        vcpus: vcpus as u8,
        nano_cpus,
        limits,
    })
}

/// The VM's memory for a container limited to `limit` bytes: the limit, plus 64 MiB
/// and 1/64 of it for the guest's kernel, its page descriptors and the agent. `None`
/// beyond what a VM can have.
pub fn vm_memory_for(limit: u64) -> Option<u32> {
    let mib = limit.div_ceil(1 << 20);
    let total = mib.checked_add(64 + mib.div_ceil(64))?;
    (total <= MAX_VM_MEMORY_MIB).then_some(total as u32)
}

/// vCPUs, `NanoCpus` and the `cpu.max` quota for `--cpus`.
fn cpus(cpus: Option<f64>, host: u32) -> Result<(u32, u64, Option<u64>), ResourceError> {
    let Some(c) = cpus else { return Ok((host, 0, None)) };
    if !(0.01..=f64::from(host)).contains(&c) {
        return Err(ResourceError::Cpus { host });
    }
    let vcpus = c.ceil() as u32;
    let quota = (c * CPU_PERIOD_US as f64).round() as u64;
    let fractional = quota != u64::from(vcpus) * CPU_PERIOD_US;
    Ok((vcpus, (c * 1e9).round() as u64, fractional.then_some(quota)))
}

/// `memory.swap.max` from `--memory-swap` (memory and swap together, `-1` for no
/// limit). There is no swap in the guest: the limit only tells the container.
fn swap(memory_swap: Option<&str>, memory: Option<u64>) -> Result<Option<u64>, ResourceError> {
    let Some(text) = memory_swap else { return Ok(None) };
    let Some(memory) = memory else {
        return Err(ResourceError::SwapWithoutMemory);
    };
    if text == "-1" {
        return Ok(Some(u64::MAX));
    }
    let total = size("--memory-swap", text)?;
    total
        .checked_sub(memory)
        .map(Some)
        .ok_or(ResourceError::SwapBelowMemory)
}

fn size(flag: &'static str, text: &str) -> Result<u64, ResourceError> {
    parse_size(text).ok_or_else(|| ResourceError::Size {
        flag,
        value: text.chars().take(64).collect(),
    })
}

/// The host's CPUs, as the default vCPU count.
pub fn host_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> ResourceFlags {
        ResourceFlags::default()
    }

    #[test]
    fn without_flags_the_vm_gets_every_host_cpu_and_no_limit_applies() {
        let p = plan(&flags(), 8).unwrap();
        assert_eq!((p.vcpus, p.vm_memory_mib, p.nano_cpus), (8, DEFAULT_MEMORY_MIB, 0));
        assert_eq!(p.limits, Resources::default());
        assert_eq!(plan(&flags(), 200).unwrap().vcpus, 64, "capped at the guest's NR_CPUS");
        assert_eq!(plan(&flags(), 0).unwrap().vcpus, 1);
    }

    #[test]
    fn memory_is_a_cgroup_limit_with_room_for_the_guest_kernel() {
        let p = plan(
            &ResourceFlags {
                memory: Some("256m".into()),
                ..flags()
            },
            2,
        )
        .unwrap();
        assert_eq!(p.limits.memory, Some(256 << 20));
        assert_eq!(p.vm_memory_mib, 256 + 64 + 4);
        assert_eq!(vm_memory_for(1 << 30), Some(1024 + 64 + 16));
        assert_eq!(vm_memory_for(6 << 20), Some(6 + 64 + 1));
        assert_eq!(vm_memory_for(u64::MAX), None);
        let err = |m: &str| {
            plan(
                &ResourceFlags {
                    memory: Some(m.into()),
                    ..flags()
                },
                2,
            )
            .unwrap_err()
        };
        assert_eq!(err("5m"), ResourceError::MemoryTooSmall);
        assert!(matches!(err("64g"), ResourceError::MemoryTooLarge(_)));
        assert!(matches!(err("lots"), ResourceError::Size { .. }));
        assert!(matches!(err("99999999999999999999"), ResourceError::Size { .. }));
    }

    #[test]
    fn cpus_round_up_to_vcpus_with_a_quota_for_the_fraction() {
        let p = |c: f64| {
            plan(
                &ResourceFlags {
                    cpus: Some(c),
                    ..flags()
                },
                4,
            )
        };
        let half = p(0.5).unwrap();
        assert_eq!(
            (half.vcpus, half.nano_cpus, half.limits.cpu_quota),
            (1, 500_000_000, Some(50_000))
        );
        let two = p(2.0).unwrap();
        assert_eq!((two.vcpus, two.limits.cpu_quota), (2, None));
        assert_eq!(p(1.5).unwrap().limits.cpu_quota, Some(150_000));
        for bad in [0.0, 0.001, -1.0, 4.5, f64::NAN, f64::INFINITY] {
            assert_eq!(p(bad).unwrap_err(), ResourceError::Cpus { host: 4 }, "{bad}");
        }
    }

    #[test]
    fn swap_follows_docker() {
        let p = |m: Option<&str>, s: &str| {
            plan(
                &ResourceFlags {
                    memory: m.map(String::from),
                    memory_swap: Some(s.into()),
                    ..flags()
                },
                1,
            )
        };
        assert_eq!(p(Some("100m"), "300m").unwrap().limits.swap, Some(200 << 20));
        assert_eq!(p(Some("100m"), "100m").unwrap().limits.swap, Some(0));
        assert_eq!(p(Some("100m"), "-1").unwrap().limits.swap, Some(u64::MAX));
        assert_eq!(p(None, "1g").unwrap_err(), ResourceError::SwapWithoutMemory);
        assert_eq!(p(Some("100m"), "50m").unwrap_err(), ResourceError::SwapBelowMemory);
    }

    #[test]
    fn cpuset_pids_and_shm_are_checked_before_anything_is_made() {
        let cpuset = |l: &str, cpus: Option<f64>| {
            plan(
                &ResourceFlags {
                    cpuset_cpus: Some(l.into()),
                    cpus,
                    ..flags()
                },
                4,
            )
        };
        assert_eq!(cpuset("0-3", None).unwrap().limits.cpuset.as_deref(), Some("0-3"));
        assert!(matches!(
            cpuset("0-3", Some(2.0)).unwrap_err(),
            ResourceError::Cpuset { last: 1, .. }
        ));
        assert!(matches!(cpuset("x", None).unwrap_err(), ResourceError::Cpuset { .. }));
        let pids = |n| {
            plan(
                &ResourceFlags {
                    pids_limit: Some(n),
                    ..flags()
                },
                1,
            )
        };
        assert_eq!(pids(100).unwrap().limits.pids, Some(100));
        assert_eq!(pids(-1).unwrap().limits.pids, None);
        assert_eq!(pids(0).unwrap().limits.pids, None);
        assert_eq!(pids(-2).unwrap_err(), ResourceError::Pids(-2));
        assert_eq!(pids(MAX_PIDS + 1).unwrap_err(), ResourceError::Pids(MAX_PIDS + 1));
        let shm = |s: &str| {
            plan(
                &ResourceFlags {
                    shm_size: Some(s.into()),
                    ..flags()
                },
                1,
            )
        };
        assert_eq!(shm("1g").unwrap().limits.shm, Some(1 << 30));
        assert_eq!(shm("0").unwrap_err(), ResourceError::Shm("0".into()));
        assert_eq!(shm("65g").unwrap_err(), ResourceError::Shm("65g".into()));
        assert!(matches!(shm("-1").unwrap_err(), ResourceError::Size { .. }));
    }
}
