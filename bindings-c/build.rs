//! Links `libtrialport.so` with the soname `libtrialport.so.0` and a version script that exports only `tp_*`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    println!("cargo:rerun-if-changed=trialport.map");
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtrialport.so.0");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/trialport.map");
    }
}
