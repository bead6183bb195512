//! The plugin components, built from source for `wasm32-wasip2` by this
//! crate's build script: the built-in plugins embedded as bytes, the test
//! guests by path.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// A built-in plugin's component by name.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// A test guest's component path by name.
pub fn test_guest(name: &str) -> Option<&'static str> {
    TEST_GUESTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
}
