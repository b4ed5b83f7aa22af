//! Legacy port-I/O devices: the serial console, the i8042 (reset only) and the boot mark.

pub mod boot_mark;
pub mod i8042;
pub mod serial;

pub use boot_mark::{BootMark, BOOT_MARK_MAGIC, BOOT_MARK_PORT};
pub use i8042::{I8042, I8042_PORT, I8042_PORT_LEN};
pub use serial::{BoundedLog, Serial, COM1_IRQ, COM1_PORT, COM1_PORT_LEN};
