//! CPUID as the guest sees it: KVM's supported set, with topology and the hypervisor
//! bit filled in per vCPU.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const ECX_HYPERVISOR: u32 = 1 << 31;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const EDX_HTT: u32 = 1 << 28;

/// Adjusts `cpuid` for vCPU `index` of `count`. `tsc_deadline` says whether KVM's
/// LAPIC emulates the TSC-deadline timer (KVM supports it but does not report it in
/// its supported CPUID); with it the guest needs no LAPIC timer calibration, which
/// is slow and unreliable in a VM.
pub fn filter_cpuid(cpuid: &mut CpuId, index: u8, count: u8, tsc_deadline: bool) {
    for entry in cpuid.as_mut_slice().iter_mut() {
        match entry.function {
            LEAF_FEATURES => {
                entry.ebx = (entry.ebx & 0x0000_ffff) | (u32::from(index) << 24) | (u32::from(count) << 16);
                entry.ecx |= ECX_HYPERVISOR;
                if tsc_deadline {
                    entry.ecx |= ECX_TSC_DEADLINE;
                }
                if count > 1 {
                    entry.edx |= EDX_HTT;
                } else {
                    entry.edx &= !EDX_HTT;
                }
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => entry.edx = u32::from(index),
            LEAF_PMU => (entry.eax, entry.ebx, entry.ecx, entry.edx) = (0, 0, 0, 0),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn filter_cpuid_sets_apic_id_count_and_hypervisor_bit() {
        let entries = [
            kvm_cpuid_entry2 {
                function: LEAF_FEATURES,
                ebx: 0xffff_1234,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: LEAF_TOPOLOGY,
                edx: 77,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: LEAF_PMU,
                eax: 5,
                ..Default::default()
            },
        ];
        let mut cpuid = CpuId::from_entries(&entries).unwrap();
        filter_cpuid(&mut cpuid, 3, 4, true);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx, (3 << 24) | (4 << 16) | 0x1234);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].ecx & ECX_TSC_DEADLINE, 0);
        assert_ne!(e[0].edx & EDX_HTT, 0);
        assert_eq!(e[1].edx, 3);
        assert_eq!(e[2].eax, 0);
    }
}
