//! `vmm`: boots one guest and runs it until it stops; see `vmm --help`.

use std::error::Error;
use std::process::exit;
use std::time::Instant;

use vmm::config::{ConfigError, VmConfig, USAGE};
use vmm::timings::Timings;

fn print_error(err: &dyn Error) {
    let mut line = format!("vmm: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{line}");
}

fn main() {
    let start = Instant::now();
    if let Err(e) = vmm::confine::close_inherited_fds() {
        print_error(&e);
        exit(1);
    }
    let config = match VmConfig::from_args(std::env::args_os().skip(1)) {
        Ok(config) => config,
        Err(ConfigError::Help) => {
            println!("{USAGE}");
            exit(0);
        }
        Err(e) => {
            print_error(&e);
            eprintln!("{USAGE}");
            exit(2);
        }
    };
    let timings = Timings::new(start, config.timings);
    match vmm::builder::boot(&config, timings.clone()) {
        Ok(stop) => {
            timings.phase("exit");
            vmm::logger::report_dropped();
            eprintln!("vmm: {stop}");
            if timings.enabled() {
                eprintln!("{}", timings.line(Some(stop.reason())));
            }
            exit(stop.exit_code());
        }
        Err(e) => {
            vmm::logger::report_dropped();
            print_error(&e);
            exit(1);
        }
    }
}
