//! Feeds arbitrary bytes to the daemon's protocol decoder exactly as a
//! client on the socket can: `read_frame` splits the stream into frames
//! (never buffering more than `MAX_FRAME`), and every frame goes to
//! `parse_request`. Neither may panic; a frame that decodes must re-encode
//! to a frame that decodes to the same request, and every failure must be a
//! one-line `Protocol` failure.

#![no_main]

use hosthog_booking::protocol::{FailureKind, FrameError, MAX_FRAME, parse_request, read_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The whole input as one frame body (the common case: one request).
    check(data);
    // And as a stream of frames, the way the server reads a connection.
    let mut reader = std::io::BufReader::with_capacity(97, data);
    loop {
        match read_frame(&mut reader) {
            Ok(Some(frame)) => {
                assert!(frame.len() < MAX_FRAME);
                assert!(!frame.contains(&b'\n'));
                check(&frame);
            }
            Ok(None) => break,
            Err(FrameError::TooLong | FrameError::Truncated) => break,
            Err(FrameError::Io(e)) => panic!("reading from a slice failed: {e}"),
        }
    }
});

fn check(frame: &[u8]) {
    match parse_request(frame) {
        Ok(request) => {
            let mut bytes = Vec::new();
            hosthog_booking::protocol::write_frame(&mut bytes, &request)
                .expect("a decoded request re-encodes");
            let mut reader = bytes.as_slice();
            let again = read_frame(&mut reader)
                .expect("re-encoded frame reads")
                .expect("re-encoded frame is there");
            assert_eq!(
                parse_request(&again).expect("re-encoded request decodes"),
                request
            );
        }
        Err(failure) => {
            assert_eq!(failure.kind, FailureKind::Protocol, "{}", failure.message);
        }
    }
}
