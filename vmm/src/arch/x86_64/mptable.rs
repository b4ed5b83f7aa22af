//! The Intel MultiProcessor table: how an ACPI-less guest finds its CPUs, IO-APIC and
//! interrupt routing. Built as bytes, then written to the EBDA.

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress};

use super::layout::{APIC_START, EBDA_SIZE, EBDA_START, IOAPIC_PINS, IOAPIC_START};
use crate::memory::GuestMemory;

/// Most vCPUs whose entries fit the EBDA window.
pub const MAX_VCPUS: u8 = 32;

const MPC_SPEC: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
const CPU_STEPPING: u32 = 0x600;
const CPU_FEATURE_APIC: u32 = 0x200;
const CPU_FEATURE_FPU: u32 = 0x001;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTSRC: u8 = 3;
const ENTRY_LINTSRC: u8 = 4;
const IRQ_INT: u8 = 0;
const IRQ_NMI: u8 = 1;
const IRQ_EXTINT: u8 = 3;
const BUS_ISA: u8 = 0;
const HEADER_LEN: usize = 44;

/// Errors writing the MP table.
#[derive(Debug, Error)]
pub enum MpTableError {
    /// unsupported vCPU count
    #[error("{count} vcpus requested; the mp table supports 1 to {MAX_VCPUS}")]
    VcpuCount {
        /// The count asked for.
        count: u8,
    },
    /// the table would not fit
    #[error("mp table of {len} bytes does not fit the ebda")]
    TooLarge {
        /// Table length.
        len: usize,
    },
    /// writing guest memory failed
    #[error("cannot write the mp table")]
    Write(#[source] vm_memory::GuestMemoryError),
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

fn processor_entry(id: u8) -> [u8; 20] {
    let mut e = [0u8; 20];
    e[0] = ENTRY_PROCESSOR;
    e[1] = id;
    e[2] = APIC_VERSION;
    e[3] = CPU_ENABLED | if id == 0 { CPU_BOOTPROCESSOR } else { 0 };
    e[4..8].copy_from_slice(&CPU_STEPPING.to_le_bytes());
    e[8..12].copy_from_slice(&(CPU_FEATURE_APIC | CPU_FEATURE_FPU).to_le_bytes());
    e
}

fn ioapic_entry(id: u8) -> [u8; 8] {
    let mut e = [ENTRY_IOAPIC, id, IOAPIC_VERSION, 1, 0, 0, 0, 0];
    e[4..8].copy_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    e
}

fn intsrc_entry(kind: u8, irq: u8, ioapic_id: u8) -> [u8; 8] {
    [ENTRY_INTSRC, kind, 0, 0, BUS_ISA, irq, ioapic_id, irq]
}

fn lintsrc_entry(kind: u8, dest_apic: u8, lint: u8) -> [u8; 8] {
    [ENTRY_LINTSRC, kind, 0, 0, BUS_ISA, 0, dest_apic, lint]
}

/// The configuration table (header plus entries) for `vcpus` CPUs.
fn config_table(vcpus: u8) -> Vec<u8> {
    let ioapic_id = vcpus + 1;
    let mut entries = Vec::new();
    for id in 0..vcpus {
        entries.extend_from_slice(&processor_entry(id));
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    entries.extend_from_slice(&ioapic_entry(ioapic_id));
    // Every ISA IRQ, the timer included, goes straight to the IO-APIC pin of the same
    // number: there is no 8259 in the path (an ExtINT entry here makes Linux take its
    // "timer through the 8259" path, which crashes without one).
    for irq in 0..IOAPIC_PINS as u8 {
        entries.extend_from_slice(&intsrc_entry(IRQ_INT, irq, ioapic_id));
    }
    entries.extend_from_slice(&lintsrc_entry(IRQ_EXTINT, 0, 0));
    entries.extend_from_slice(&lintsrc_entry(IRQ_NMI, 0xff, 1));
    let count = (vcpus as u16) + 1 + 1 + IOAPIC_PINS as u16 + 2;
    let mut table = Vec::with_capacity(HEADER_LEN + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((HEADER_LEN + entries.len()) as u16).to_le_bytes());
    table.push(MPC_SPEC);
    table.push(0); // checksum, below
    table.extend_from_slice(b"HULL    ");
    table.extend_from_slice(b"MICROVM     ");
    table.extend_from_slice(&[0; 4]); // oem table pointer
    table.extend_from_slice(&[0; 2]); // oem table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    table.extend_from_slice(&[0; 4]);
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);
    table
}

/// The 16-byte floating pointer structure pointing at `table_addr`.
fn floating_pointer(table_addr: u32) -> [u8; 16] {
    let mut fp = [0u8; 16];
    fp[0..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&table_addr.to_le_bytes());
    fp[8] = 1; // length in 16-byte units
    fp[9] = MPC_SPEC;
    fp[10] = checksum(&fp);
    fp
}

/// The whole MP table image as placed at the EBDA.
pub fn mptable_bytes(vcpus: u8) -> Result<Vec<u8>, MpTableError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(MpTableError::VcpuCount { count: vcpus });
    }
    let table_addr = (EBDA_START + 16) as u32;
    let mut image = floating_pointer(table_addr).to_vec();
    image.extend_from_slice(&config_table(vcpus));
    if image.len() as u64 > EBDA_SIZE {
        return Err(MpTableError::TooLarge { len: image.len() });
    }
    Ok(image)
}

/// Writes the MP table for `vcpus` CPUs into guest memory.
pub fn setup_mptable(mem: &GuestMemory, vcpus: u8) -> Result<(), MpTableError> {
    let image = mptable_bytes(vcpus)?;
    mem.write_slice(&image, GuestAddress(EBDA_START))
        .map_err(MpTableError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn mptable_checksums_are_valid_for_every_vcpu_count() {
        for vcpus in 1..=MAX_VCPUS {
            let image = mptable_bytes(vcpus).unwrap();
            assert_eq!(sum(&image[..16]), 0, "floating pointer, {vcpus} vcpus");
            let len = u16::from_le_bytes([image[20], image[21]]) as usize;
            assert_eq!(16 + len, image.len());
            assert_eq!(sum(&image[16..]), 0, "config table, {vcpus} vcpus");
        }
    }

    #[test]
    fn mptable_lists_each_cpu_with_bsp_first() {
        let image = mptable_bytes(2).unwrap();
        let first = &image[16 + HEADER_LEN..];
        assert_eq!(
            (first[0], first[1], first[3]),
            (ENTRY_PROCESSOR, 0, CPU_ENABLED | CPU_BOOTPROCESSOR)
        );
        assert_eq!((first[20], first[21], first[23]), (ENTRY_PROCESSOR, 1, CPU_ENABLED));
    }

    #[test]
    fn mptable_routes_every_isa_irq_including_the_timer_as_a_plain_interrupt() {
        let image = mptable_bytes(1).unwrap();
        let intsrc: Vec<&[u8]> = image[16 + HEADER_LEN + 20..]
            .chunks(8)
            .filter(|e| e[0] == ENTRY_INTSRC)
            .collect();
        assert_eq!(intsrc.len(), IOAPIC_PINS as usize);
        for (irq, e) in intsrc.iter().enumerate() {
            assert_eq!((e[1], e[5], e[7]), (IRQ_INT, irq as u8, irq as u8));
        }
    }

    #[test]
    fn mptable_rejects_zero_and_too_many_vcpus() {
        assert!(mptable_bytes(0).is_err());
        assert!(mptable_bytes(MAX_VCPUS + 1).is_err());
    }
}
