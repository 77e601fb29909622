//! HAR parsing and scanning over any bytes. Property: a clear error or a
//! scan, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use traffic_guardian_core::Engine;
use traffic_guardian_core::offline::scan_har;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::builtin)
}

fuzz_target!(|data: &[u8]| {
    let _ = scan_har(engine(), "fuzz.har", data);
});
