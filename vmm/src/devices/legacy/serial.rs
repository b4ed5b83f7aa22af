//! The 16550 serial console (vm-superio), writing guest output to a bounded sink.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vm_superio::serial::NoEvents;

use crate::bus::BusDevice;
use crate::devices::IrqLine;

/// COM1 base port.
pub const COM1_PORT: u64 = 0x3f8;
/// COM1 port range length.
pub const COM1_PORT_LEN: u64 = 8;
/// COM1 interrupt line.
pub const COM1_IRQ: u32 = 4;

/// A console sink that keeps at most `limit` bytes and counts the rest as dropped.
pub struct BoundedLog {
    out: Box<dyn Write + Send>,
    written: u64,
    limit: u64,
    dropped: Arc<AtomicU64>,
}

impl BoundedLog {
    /// Wraps `out`, keeping at most `limit` bytes.
    pub fn new(out: Box<dyn Write + Send>, limit: u64) -> Self {
        BoundedLog {
            out,
            written: 0,
            limit,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counter of bytes dropped because the limit was reached or the sink failed.
    pub fn dropped(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}

impl Write for BoundedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.written).min(buf.len() as u64) as usize;
        let kept = if room > 0 {
            self.out.write(&buf[..room]).unwrap_or(0)
        } else {
            0
        };
        // Console output is unbuffered: a guest that dies mid-line still shows it.
        let _ = self.out.flush();
        self.written += kept as u64;
        self.dropped.fetch_add((buf.len() - kept) as u64, Ordering::Relaxed);
        // The guest never sees a sink error: a full or broken log only drops bytes.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.out.flush();
        Ok(())
    }
}

/// The console UART on the port-I/O bus.
pub struct Serial(vm_superio::Serial<IrqLine, NoEvents, BoundedLog>);

impl Serial {
    /// A UART raising `irq` and writing to `log`.
    pub fn new(irq: IrqLine, log: BoundedLog) -> Self {
        Serial(vm_superio::Serial::new(irq, log))
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let ([byte], Ok(offset)) = (data, u8::try_from(offset)) {
            *byte = self.0.read(offset);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let ([byte], Ok(offset)) = (data, u8::try_from(offset)) {
            if let Err(e) = self.0.write(offset, *byte) {
                crate::warn_limited!("serial: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bounded_log_keeps_limit_bytes_and_counts_dropped() {
        let sink = Shared::default();
        let mut log = BoundedLog::new(Box::new(sink.clone()), 5);
        let dropped = log.dropped();
        assert_eq!(log.write(b"hello world").unwrap(), 11);
        assert_eq!(log.write(b"!").unwrap(), 1);
        assert_eq!(&*sink.0.lock().unwrap(), b"hello");
        assert_eq!(dropped.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn serial_transmits_bytes_written_to_thr() {
        let sink = Shared::default();
        let mut serial = Serial::new(
            IrqLine::new(COM1_IRQ).unwrap(),
            BoundedLog::new(Box::new(sink.clone()), 1024),
        );
        for b in b"ok\n" {
            serial.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"ok\n");
    }
}
