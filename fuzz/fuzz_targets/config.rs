//! Operator config files. Properties: no panic; a parsed config either
//! passes the checks or every problem names a field path and a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffic_guardian_host::config::parse;
use traffic_guardian_host::check_config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(config) => {
            let report = check_config(&config);
            for problem in &report.problems {
                assert!(!problem.path.is_empty() && !problem.reason.is_empty(), "{problem:?}");
            }
        }
        Err(problem) => assert!(!problem.reason.is_empty(), "{problem:?}"),
    }
});
