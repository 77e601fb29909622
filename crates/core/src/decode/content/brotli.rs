//! Brotli (RFC 7932) through the streaming state API, standard window sizes only.

use ::brotli::enc::StandardAlloc;
use ::brotli::{BrotliDecompressStream, BrotliResult, BrotliState};

use super::CHUNK;

/// Brotli through the decoder's streaming state API. Standard (not
/// large-window) streams only, so the window is at most 16 MiB.
pub(super) struct Brotli {
    state: BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>,
    scratch: Box<[u8]>,
    pub(super) done: bool,
}

impl Brotli {
    pub(super) fn new() -> Brotli {
        Brotli {
            state: BrotliState::new_strict(
                StandardAlloc::default(),
                StandardAlloc::default(),
                StandardAlloc::default(),
            ),
            scratch: vec![0; CHUNK].into_boxed_slice(),
            done: false,
        }
    }

    pub(super) fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        if self.done {
            return Ok(input.len());
        }
        let mut available_in = input.len();
        let mut input_offset = 0;
        let mut available_out = self.scratch.len();
        let mut output_offset = 0;
        let mut total_out = 0;
        let result = BrotliDecompressStream(
            &mut available_in,
            &mut input_offset,
            input,
            &mut available_out,
            &mut output_offset,
            &mut self.scratch[..],
            &mut total_out,
            &mut self.state,
        );
        out.extend_from_slice(self.scratch.get(..output_offset).unwrap_or_default());
        match result {
            BrotliResult::ResultSuccess => {
                self.done = true;
                Ok(input.len())
            }
            BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => Ok(input_offset),
            BrotliResult::ResultFailure => Err(format!(
                "invalid brotli stream ({:?})",
                self.state.error_code
            )),
        }
    }
}
