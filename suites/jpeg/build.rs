//! Compiles src/decode.c (the setjmp error handler and the decode loop) against the libjpeg
//! headers that mozjpeg-sys builds (`DEP_JPEG_INCLUDE`: its generated jconfig.h and its sources).
use std::env;

fn main() {
    println!("cargo:rerun-if-changed=src/decode.c");
    let include = env::var_os("DEP_JPEG_INCLUDE")
        .expect("mozjpeg-sys sets DEP_JPEG_INCLUDE (its `links = \"jpeg\"` metadata)");
    let mut build = cc::Build::new();
    for dir in env::split_paths(&include) {
        build.include(dir);
    }
    build
        .file("src/decode.c")
        .warnings(true)
        .compile("ovbench_jpeg_decode");
}
