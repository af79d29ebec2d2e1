//! Trainable parameters, created from a seed on the host so that every device and every
//! run starts from bit-identical weights (candle's own CPU random source cannot be seeded).

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Shape, Tensor, TensorId, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The module a parameter belongs to, for per-module counts and gradient checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    ImageEncoder,
    TextEncoder,
    TextDecoder,
    Temperature,
}

impl Module {
    pub fn name(self) -> &'static str {
        match self {
            Module::ImageEncoder => "image_encoder",
            Module::TextEncoder => "text_encoder",
            Module::TextDecoder => "text_decoder",
            Module::Temperature => "temperature",
        }
    }
}

/// One trainable tensor.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub module: Module,
    pub var: Var,
    /// A matrix (dense kernels, embeddings, positions, queries): decayed by ovbench's own
    /// policy (not biases, norms, temperature).
    pub decay: bool,
    /// A dense layer's matrix, what the released code's `.*/kernel$` names: the only
    /// parameters the released policies decay.
    pub kernel: bool,
    /// False for parameters the recipe's loss does not reach (OpenVision 2 never uses the
    /// encoder's pooled output, so its final norm gets no gradient): the optimizer skips them.
    pub in_objective: bool,
}

/// How parameters are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Drawn from the seed (training).
    Seeded,
    /// All zeros, never touched: lazily mapped pages, so even g/14 can be built to count
    /// its parameters without using its memory.
    Shapes,
}

/// All trainable tensors of a model, in creation order, with the seeded generator that made them.
pub struct ParamStore {
    pub params: Vec<Param>,
    rng: ChaCha8Rng,
    device: Device,
    dtype: DType,
    init: Init,
    module: Module,
    prefix: Vec<String>,
}

impl ParamStore {
    pub fn new(seed: u64, device: &Device) -> Self {
        Self::with(seed, device, DType::F32, Init::Seeded)
    }

    pub fn with(seed: u64, device: &Device, dtype: DType, init: Init) -> Self {
        ParamStore {
            params: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
            dtype,
            init,
            module: Module::ImageEncoder,
            prefix: Vec::new(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Parameters created inside `f` belong to `module`.
    pub fn in_module<T>(&mut self, module: Module, f: impl FnOnce(&mut Self) -> T) -> T {
        let old = std::mem::replace(&mut self.module, module);
        let out = f(self);
        self.module = old;
        out
    }

    /// Parameters created inside `f` get `name.` prefixed.
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.prefix.push(name.to_string());
        let out = f(self);
        self.prefix.pop();
        out
    }

    fn add(
        &mut self,
        name: &str,
        data: Option<Vec<f32>>,
        shape: Shape,
        decay: bool,
        kernel: bool,
    ) -> Result<Tensor> {
        let var = match data {
            Some(data) => Var::from_tensor(
                &Tensor::from_vec(data, shape, &self.device)?.to_dtype(self.dtype)?,
            )?,
            None => Var::zeros(shape, self.dtype, &self.device)?,
        };
        let full = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix.join("."))
        };
        let out = var.as_tensor().clone();
        self.params.push(Param {
            name: full,
            module: self.module,
            var,
            decay,
            kernel,
            in_objective: true,
        });
        Ok(out)
    }

    /// A matrix drawn from N(0, std²) that is not a dense layer's (embeddings, positions,
    /// queries); decayed by ovbench's own policy only.
    pub fn normal(&mut self, name: &str, shape: impl Into<Shape>, std: f64) -> Result<Tensor> {
        self.drawn(name, shape.into(), std, false)
    }

    /// A dense layer's matrix drawn from N(0, std²); decayed by every policy.
    pub fn kernel(&mut self, name: &str, shape: impl Into<Shape>, std: f64) -> Result<Tensor> {
        self.drawn(name, shape.into(), std, true)
    }

    fn drawn(&mut self, name: &str, shape: Shape, std: f64, kernel: bool) -> Result<Tensor> {
        if self.init == Init::Shapes {
            return self.add(name, None, shape, true, kernel);
        }
        let dist = Normal::new(0.0f32, std as f32).expect("std is finite and positive");
        let data: Vec<f32> = (0..shape.elem_count())
            .map(|_| dist.sample(&mut self.rng))
            .collect();
        self.add(name, Some(data), shape, true, kernel)
    }

    /// A constant tensor (biases, norm scales, temperature); not decayed.
    pub fn constant(&mut self, name: &str, shape: impl Into<Shape>, value: f32) -> Result<Tensor> {
        let shape = shape.into();
        if self.init == Init::Shapes {
            return self.add(name, None, shape, false, false);
        }
        let data = vec![value; shape.elem_count()];
        self.add(name, Some(data), shape, false, false)
    }

    /// Number of scalars per module.
    pub fn counts(&self) -> std::collections::BTreeMap<Module, usize> {
        let mut m = std::collections::BTreeMap::new();
        for p in &self.params {
            *m.entry(p.module).or_insert(0) += p.var.elem_count();
        }
        m
    }

    pub fn total(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }

    /// Bytes held by the parameter tensors.
    pub fn bytes(&self) -> usize {
        self.params
            .iter()
            .map(|p| p.var.elem_count() * p.var.dtype().size_in_bytes())
            .sum()
    }

    /// Ids of the trainable tensors, to pick their gradients out of a [`GradStore`].
    pub fn var_ids(&self) -> HashSet<TensorId> {
        self.params.iter().map(|p| p.var.as_tensor().id()).collect()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

/// Keeps only the gradients of `keep`, detached.
///
/// candle's backward pass also stores a gradient for every constant input it meets (masks,
/// one-hot targets, pixels), and a variable's gradient keeps a backprop graph that references
/// the forward activations. Both hold memory until the store is dropped; this frees them.
pub fn retain_grads(grads: GradStore, keep: &HashSet<TensorId>) -> GradStore {
    let mut out = GradStore::default();
    for id in keep {
        if let Some(g) = grads.get_id(*id) {
            out.insert_id(*id, g.detach());
        }
    }
    out
}
