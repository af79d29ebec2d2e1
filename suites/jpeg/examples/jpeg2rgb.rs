//! `jpeg2rgb [--c-idct] IN.jpg... OUTDIR`: decodes each JPEG to OUTDIR/<name>.rgb (raw RGB bytes) and prints
//! `<name> <width> <height>` per file, or `<name> error <message>`. Used by
//! scripts/eval-reference/jpeg_compare.py to compare against Pillow on many files.
use std::path::Path;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // libjpeg's C IDCT instead of the SIMD arithmetic, to see what that changes.
    let c_idct = args.first().is_some_and(|a| a == "--c-idct");
    if c_idct {
        args.remove(0);
    }
    let Some((out, inputs)) = args.split_last() else {
        eprintln!("usage: jpeg2rgb [--c-idct] IN.jpg... OUTDIR");
        std::process::exit(2);
    };
    for input in inputs {
        let name = Path::new(input).file_name().unwrap().to_string_lossy();
        let bytes = match std::fs::read(input) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{input}: {e}");
                std::process::exit(2);
            }
        };
        let decoded = if c_idct {
            ovbench_jpeg::decode_rgb_libjpeg_c_idct(&bytes)
        } else {
            ovbench_jpeg::decode_rgb(&bytes)
        };
        match decoded {
            Ok(img) => {
                let dest = Path::new(out).join(format!("{name}.rgb"));
                if let Err(e) = std::fs::write(&dest, &img.data) {
                    eprintln!("{}: {e}", dest.display());
                    std::process::exit(2);
                }
                println!("{name} {} {}", img.width, img.height);
            }
            Err(e) => println!("{name} error {e}"),
        }
    }
}
