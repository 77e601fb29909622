//! IPC task files as a container could write them. Properties: no panic;
//! what parses re-serialises and parses back to the same task; an error
//! result never echoes more than a short fragment of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffic_guardian_ipc::{RequestId, Task};

fuzz_target!(|data: &[u8]| {
    match Task::parse(data) {
        Ok(task) => {
            let again = Task::parse(&task.to_json()).expect("a parsed task re-parses");
            assert_eq!(again, task);
        }
        Err(err) => {
            assert!(err.message.len() <= 512, "error message of {} bytes", err.message.len());
        }
    }
    if let Ok(name) = std::str::from_utf8(data) {
        if let Some(id) = RequestId::from_file_name(name) {
            assert!(!id.as_str().contains('/') && !id.as_str().starts_with('.'));
        }
    }
});
