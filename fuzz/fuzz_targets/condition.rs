#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gke_iam_remediator_fuzz::condition(data);
});
