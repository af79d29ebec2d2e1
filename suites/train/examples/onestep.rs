use candle_core::Device;
use ovbench_train::data::{Batch, TextLengths};
use ovbench_train::layers::Precision;
use ovbench_train::recipe::{build, Recipe};
use ovbench_train::{ModelConfig, PrefixAttention};
use std::time::Instant;
fn main() {
    let mut cfg =
        ModelConfig::new("Ti/16".parse().unwrap(), 32, 0.5, PrefixAttention::Causal).unwrap();
    let small = |width| ovbench_train::config::StackDims {
        width,
        depth: 2,
        heads: 2,
        mlp_dim: 2 * width,
    };
    cfg.vision = small(32);
    cfg.text_encoder.dims = small(24);
    cfg.v1_decoder.dims = small(16);
    cfg.v2_decoder.dims = small(16);
    for r in [Recipe::Ov1, Recipe::Ov2] {
        let b = build(r, &cfg, 0, &Device::Cpu).unwrap();
        let batch = Batch::synthetic(4, 32, &TextLengths::default(), 0, &Device::Cpu).unwrap();
        for _ in 0..3 {
            let t = Instant::now();
            let l = b.model.loss(&batch, Precision::F32, 0).unwrap();
            let t1 = t.elapsed();
            let g = l.total.backward().unwrap();
            println!("{r:?} fwd {:?} bwd {:?}", t1, t.elapsed() - t1);
            drop(g);
        }
    }
}
