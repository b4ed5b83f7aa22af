//! The i8042 keyboard controller, present only so the guest can reset the machine
//! (`0xfe` to the command port), which hull treats as the VM exiting.

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use crate::bus::BusDevice;
use crate::vstate::vcpu::ExitSignal;
use crate::vstate::VmExit;

/// Status register value: "output buffer full" with the input buffer empty. A
/// driver flushing the output buffer never sees it drain and concludes quickly that
/// there is no controller (no keyboard probing, which costs thousands of exits),
/// while the reset path, which waits for the input buffer (bit 1) to clear, never
/// waits.
pub const STATUS_NO_CONTROLLER: u8 = 0x01;
/// Offset of the command/status port.
const COMMAND_OFFSET: u64 = 4;

/// First i8042 port (data); the command/status port is at offset 4.
pub const I8042_PORT: u64 = 0x60;
/// Ports covered: 0x60..=0x64.
pub const I8042_PORT_LEN: u64 = 5;

/// Turns the i8042 reset line into a VM stop.
pub struct ResetLine(Arc<ExitSignal>);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.stop(VmExit::Reset);
        Ok(())
    }
}

/// The i8042 on the port-I/O bus.
pub struct I8042(I8042Device<ResetLine>);

impl I8042 {
    /// An i8042 whose reset stops the VM through `exit`.
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        I8042(I8042Device::new(ResetLine(exit)))
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let [byte] = data {
            *byte = if offset == COMMAND_OFFSET {
                STATUS_NO_CONTROLLER
            } else {
                0
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let ([byte], Ok(offset)) = (data, u8::try_from(offset)) {
            let _ = self.0.write(offset, *byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn i8042_reset_command_stops_the_vm_with_reset() {
        let (tx, rx) = channel();
        let mut dev = I8042::new(ExitSignal::new(tx));
        dev.write(4, &[0xfe]);
        assert_eq!(rx.try_recv().unwrap(), VmExit::Reset);
    }

    #[test]
    fn i8042_status_reads_full_output_and_empty_input_buffer() {
        let (tx, _rx) = channel();
        let mut dev = I8042::new(ExitSignal::new(tx));
        let mut status = [0u8; 1];
        dev.read(4, &mut status);
        assert_eq!(status[0] & 0x01, 0x01, "output buffer full");
        assert_eq!(status[0] & 0x02, 0, "input buffer empty: the reset path never waits");
    }

    #[test]
    fn i8042_ignores_other_commands_and_wide_accesses() {
        let (tx, rx) = channel();
        let mut dev = I8042::new(ExitSignal::new(tx));
        dev.write(4, &[0x20]);
        dev.write(4, &[0xfe, 0xfe]);
        assert!(rx.try_recv().is_err());
    }
}
