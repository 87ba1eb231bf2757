//! Links `libtrialport.so` with a version script that exports only `tp_*`, and gives it a soname only when the
//! build is for the C SDK.
//!
//! The soname names the file a linked program loads. The SDK (`scripts/dist.sh`) ships
//! `lib/libtrialport.so.0.<minor>.<patch>` with its `libtrialport.so.0` and `libtrialport.so` links, so it builds with
//! `TRIALPORT_C_SONAME=libtrialport.so.0`. A plain `cargo build` sets none: cargo writes only `libtrialport.so`,
//! and a program linked against it then needs `libtrialport.so`, which is there (with a soname, it would need a
//! `libtrialport.so.0` that nothing in `target/` creates).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    println!("cargo:rerun-if-changed=trialport.map");
    println!("cargo:rerun-if-env-changed=TRIALPORT_C_SONAME");
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/trialport.map");
        let soname = std::env::var("TRIALPORT_C_SONAME").unwrap_or_default();
        if !soname.is_empty() {
            let major = soname.strip_prefix("libtrialport.so.").unwrap_or("");
            if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
                panic!("TRIALPORT_C_SONAME must be libtrialport.so.<major>, not {soname:?}");
            }
            println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
        }
    }
}
