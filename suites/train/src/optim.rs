//! AdamW (b1 0.9, b2 0.95, weight decay 0.2) updating parameters and moments in place:
//! no per-step temporaries, unlike candle_nn::AdamW's ~15 per variable. On the CPU the moments
//! live on the host and one pass per parameter, split over the threads, reads the gradient and
//! updates both moments and the parameter (memory-bound, so one pass instead of three matters);
//! on other devices three in-place kernels do the same.
//!
//! A policy sets each moment's storage dtype and which parameters decay
//! ([`crate::policy::OptimizerExec`]). A bf16 moment is updated in f32 and rounded to bf16
//! (nearest, ties to even) only when stored, as optax's `scale_by_adam(mu_dtype=...)` does: the
//! step's update uses the moment before the rounding.

use crate::fused::{vmath, Real};
use crate::params::Param;
use crate::policy::{DecaySet, MomentDtype};
use candle_core::{backprop::GradStore, CpuStorage, DType, Layout, Result, Tensor};
use half::bf16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        // Betas and decay from the released recipes; lr is the pre-training peak 1.024e-3.
        AdamWConfig {
            lr: 1.024e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.2,
        }
    }
}

/// The storage of the moments and the decay rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdamWState {
    pub mu: MomentDtype,
    pub nu: MomentDtype,
    pub decay_set: DecaySet,
}

impl AdamWState {
    /// The AdamW settings an execution policy states, with the run's learning rate.
    pub fn from_policy(lr: f64, o: &crate::policy::OptimizerExec) -> (AdamWConfig, AdamWState) {
        (
            AdamWConfig {
                lr,
                beta1: o.b1,
                beta2: o.b2,
                eps: o.eps,
                weight_decay: o.weight_decay,
            },
            AdamWState {
                mu: o.mu,
                nu: o.nu,
                decay_set: o.decay_set,
            },
        )
    }
}

impl Default for AdamWState {
    /// ovbench's own: both moments f32, every matrix decayed.
    fn default() -> Self {
        AdamWState {
            mu: MomentDtype::F32,
            nu: MomentDtype::F32,
            decay_set: DecaySet::MatricesAndEmbeddings,
        }
    }
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    pub state_cfg: AdamWState,
    step: u64,
    /// First and second moments per parameter, same shapes.
    state: Vec<Moments>,
    /// What ran instead of the requested state, where the device cannot keep it.
    pub notes: Vec<String>,
}

/// One moment's storage on the host.
enum Store {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
}

impl Store {
    fn zeros(n: usize, d: MomentDtype) -> Store {
        match d {
            MomentDtype::F32 => Store::F32(vec![0.0; n]),
            MomentDtype::Bf16 => Store::Bf16(vec![bf16::ZERO; n]),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Store::F32(v) => 4 * v.len(),
            Store::Bf16(v) => 2 * v.len(),
        }
    }
}

enum Moments {
    /// f32 parameters on the CPU, f32 moments.
    Host(Mutex<(Vec<f32>, Vec<f32>)>),
    /// f32 parameters on the CPU, a moment in another dtype (boxed: the common case above
    /// keeps its size, and the default job's exact allocator peaks with it).
    HostStored(Box<Mutex<(Store, Store)>>),
    /// Elsewhere: f32 tensors on the parameter's device.
    Device(Tensor, Tensor),
}

impl Moments {
    fn bytes(&self) -> usize {
        match self {
            Moments::Host(mv) => {
                let mv = mv.lock().expect("moments lock");
                4 * (mv.0.len() + mv.1.len())
            }
            Moments::HostStored(mv) => {
                let mv = mv.lock().expect("moments lock");
                mv.0.bytes() + mv.1.bytes()
            }
            Moments::Device(m, v) => {
                m.elem_count() * m.dtype().size_in_bytes()
                    + v.elem_count() * v.dtype().size_in_bytes()
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("parameter {0} received no gradient")]
    MissingGrad(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl AdamW {
    /// ovbench's own state: f32 moments, every matrix decayed.
    pub fn new(params: &[Param], cfg: AdamWConfig) -> Result<Self> {
        Self::with_state(params, cfg, AdamWState::default())
    }

    pub fn with_state(params: &[Param], cfg: AdamWConfig, st: AdamWState) -> Result<Self> {
        let mut notes = Vec::new();
        let state = params
            .iter()
            .map(|p| {
                let t = p.var.as_tensor();
                let n = t.elem_count();
                let f32s = (st.mu, st.nu) == (MomentDtype::F32, MomentDtype::F32);
                Ok(if t.device().is_cpu() && t.dtype() == DType::F32 && f32s {
                    Moments::Host(Mutex::new((vec![0.0; n], vec![0.0; n])))
                } else if t.device().is_cpu() && t.dtype() == DType::F32 {
                    Moments::HostStored(Box::new(Mutex::new((
                        Store::zeros(n, st.mu),
                        Store::zeros(n, st.nu),
                    ))))
                } else {
                    Moments::Device(t.zeros_like()?, t.zeros_like()?)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let on_device = state.iter().any(|m| matches!(m, Moments::Device(..)));
        if on_device && (st.mu, st.nu) != (MomentDtype::F32, MomentDtype::F32) {
            notes.push(format!(
                "optimizer: moments on the device are kept in the parameters' dtype (the device \
                 kernels have no bf16 moments); requested mu {:?}, nu {:?}",
                st.mu, st.nu
            ));
        }
        Ok(AdamW {
            cfg,
            state_cfg: st,
            step: 0,
            state,
            notes,
        })
    }

    /// Bytes of optimizer state.
    pub fn state_bytes(&self) -> usize {
        self.state.iter().map(Moments::bytes).sum()
    }

    /// Whether `p` decays under this optimizer's decay set.
    pub fn decays(&self, p: &Param) -> bool {
        match self.state_cfg.decay_set {
            DecaySet::Kernels => p.kernel,
            DecaySet::MatricesAndEmbeddings => p.decay,
        }
    }

    pub fn step(
        &mut self,
        params: &[Param],
        grads: &GradStore,
    ) -> std::result::Result<(), OptimError> {
        self.step += 1;
        let c = self.cfg;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for (p, moments) in params.iter().zip(&self.state) {
            if !p.in_objective {
                continue;
            }
            let g = grads
                .get(p.var.as_tensor())
                .ok_or_else(|| OptimError::MissingGrad(p.name.clone()))?;
            let g = g.to_dtype(DType::F32)?;
            let wd = if self.decays(p) { c.weight_decay } else { 0.0 };
            let h = Hyper {
                b1: c.beta1 as f32,
                b2: c.beta2 as f32,
                lr: c.lr as f32,
                bc1: bc1 as f32,
                bc2: bc2 as f32,
                eps: c.eps as f32,
                wd: wd as f32,
            };
            match moments {
                Moments::Host(mv) => p.var.as_tensor().inplace_op2(&g, &HostStep { mv, h })?,
                Moments::HostStored(mv) => p
                    .var
                    .as_tensor()
                    .inplace_op2(&g, &HostStoredStep { mv, h })?,
                Moments::Device(m, v) => {
                    m.inplace_op2(
                        &g,
                        &Moment {
                            beta: h.b1,
                            square: false,
                        },
                    )?;
                    v.inplace_op2(
                        &g,
                        &Moment {
                            beta: h.b2,
                            square: true,
                        },
                    )?;
                    p.var.as_tensor().inplace_op3(m, v, &Apply(h))?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Hyper {
    b1: f32,
    b2: f32,
    lr: f32,
    bc1: f32,
    bc2: f32,
    eps: f32,
    wd: f32,
}

/// The whole update of one f32 parameter on the CPU, in one pass.
struct HostStep<'a> {
    mv: &'a Mutex<(Vec<f32>, Vec<f32>)>,
    h: Hyper,
}

/// The same with moments stored in other dtypes.
struct HostStoredStep<'a> {
    mv: &'a Mutex<(Store, Store)>,
    h: Hyper,
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

impl candle_core::InplaceOp2 for HostStep<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let p = contiguous_f32_mut(s1, l1, "parameter")?;
        let g = contiguous_f32(s2, l2, "gradient")?;
        let mut mv = self
            .mv
            .lock()
            .map_err(|_| candle_core::Error::Msg("adamw: moments lock poisoned".into()))?;
        let (m, v) = &mut *mv;
        same_len(p, g, m.len(), v.len())?;
        let h = self.h;
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), (m, v))| {
                adamw_chunk(p, g, m, v, [h.b1, h.b2, h.lr, h.bc1, h.bc2, h.eps, h.wd])
            });
        Ok(())
    }
}

impl candle_core::InplaceOp2 for HostStoredStep<'_> {
    fn name(&self) -> &'static str {
        "adamw-stored-moments"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let p = contiguous_f32_mut(s1, l1, "parameter")?;
        let g = contiguous_f32(s2, l2, "gradient")?;
        let mut mv = self
            .mv
            .lock()
            .map_err(|_| candle_core::Error::Msg("adamw: moments lock poisoned".into()))?;
        let h = self.h;
        let h = [h.b1, h.b2, h.lr, h.bc1, h.bc2, h.eps, h.wd];
        match &mut *mv {
            (Store::F32(m), Store::F32(v)) => update(p, g, m, v, h)?,
            (Store::Bf16(m), Store::F32(v)) => update(p, g, m, v, h)?,
            (Store::F32(m), Store::Bf16(v)) => update(p, g, m, v, h)?,
            (Store::Bf16(m), Store::Bf16(v)) => update(p, g, m, v, h)?,
        }
        Ok(())
    }
}

vmath::simd_kernel! {
    /// m ← b1 m + (1 − b1) g;  v ← b2 v + (1 − b2) g²;  p ← p − lr (m̂ / (√v̂ + eps) + wd p),
    /// in the same order of operations as the three device kernels.
    fn adamw_chunk<T: Real>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: [T; 7]) {
        let [b1, b2, lr, bc1, bc2, eps, wd] = h;
        let (a1, a2) = (T::one() - b1, T::one() - b2);
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = b1 * *m + a1 * g;
            *v = b2 * *v + a2 * g * g;
            let upd = (*m / bc1) / ((*v / bc2).sqrt() + eps);
            *p = *p - lr * (upd + wd * *p);
        }
    }
}

fn same_len(p: &[f32], g: &[f32], m: usize, v: usize) -> Result<()> {
    if g.len() != p.len() || m != p.len() || v != p.len() {
        candle_core::bail!("adamw: gradient or moments do not match the parameter's size");
    }
    Ok(())
}

/// A moment's storage type: f32, or bf16 rounded on store.
trait MomentStore: Copy + Send + Sync {
    fn load(self) -> f32;
    fn store(x: f32) -> Self;
}

impl MomentStore for f32 {
    #[inline(always)]
    fn load(self) -> f32 {
        self
    }
    #[inline(always)]
    fn store(x: f32) -> f32 {
        x
    }
}

impl MomentStore for bf16 {
    #[inline(always)]
    fn load(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn store(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
}

/// One AdamW update of a parameter in parallel chunks, whatever its moments' storage.
fn update<M: MomentStore + Send, V: MomentStore + Send>(
    p: &mut [f32],
    g: &[f32],
    m: &mut [M],
    v: &mut [V],
    h: [f32; 7],
) -> Result<()> {
    same_len(p, g, m.len(), v.len())?;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| adamw_stored(p, g, m, v, h));
    Ok(())
}

/// As [`adamw_chunk`], with moments stored in `M` / `V`: each is updated in f32 from its stored
/// value, the update uses the f32 values, and they are rounded when stored (optax's order).
fn adamw_stored<M: MomentStore, V: MomentStore>(
    p: &mut [f32],
    g: &[f32],
    m: &mut [M],
    v: &mut [V],
    h: [f32; 7],
) {
    let [b1, b2, lr, bc1, bc2, eps, wd] = h;
    let (a1, a2) = (1.0 - b1, 1.0 - b2);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let mf = b1 * m.load() + a1 * g;
        let vf = b2 * v.load() + a2 * g * g;
        let upd = (mf / bc1) / ((vf / bc2).sqrt() + eps);
        *p -= lr * (upd + wd * *p);
        *m = M::store(mf);
        *v = V::store(vf);
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("adamw: {what} must be contiguous f32"),
    }
}

fn contiguous_f32_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("adamw: {what} must be contiguous f32"),
    }
}

/// The device kernels' CPU side: CPU parameters are f32 master weights, whose moments live on
/// the host and are updated by [`HostStep`] in one pass; f64 runs only in gradient checks.
fn host_moments_only() -> Result<()> {
    candle_core::bail!("adamw: CPU parameters must be f32 (their update is the one-pass host step)")
}

/// m <- beta m + (1 - beta) g   (or g² when `square`). Read only by the CUDA kernels.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Moment {
    beta: f32,
    square: bool,
}

impl candle_core::InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }
    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        host_moments_only()
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<()> {
        crate::optim_cuda::moment(s1, l1, s2, l2, self.beta, 1.0 - self.beta, self.square)
    }
}

/// p <- p - lr (m̂ / (sqrt(v̂) + eps) + wd p). Read only by the CUDA kernels.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Apply(Hyper);

impl candle_core::InplaceOp3 for Apply {
    fn name(&self) -> &'static str {
        "adamw-apply"
    }
    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        host_moments_only()
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<()> {
        let h = self.0;
        let h = [h.lr, h.bc1, h.bc2, h.eps, h.wd];
        crate::optim_cuda::apply(s1, l1, s2, l2, s3, l3, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use candle_core::Device;

    /// The in-place update equals the textbook AdamW formula computed with tensor ops.
    #[test]
    fn matches_reference_formula() {
        let dev = Device::Cpu;
        let mut ps = ParamStore::new(1, &dev);
        let w = ps.normal("w", (7, 5), 1.0).unwrap();
        let w0: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        let cfg = AdamWConfig::default();
        let mut opt = AdamW::new(&ps.params, cfg).unwrap();
        let (mut m, mut v) = (vec![0f32; 35], vec![0f32; 35]);
        let mut p = w0.clone();
        for step in 1..=3 {
            let loss = w.sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let g: Vec<f32> = grads
                .get(&w)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            opt.step(&ps.params, &grads).unwrap();
            let (bc1, bc2) = (1.0 - 0.9f32.powi(step), 1.0 - 0.95f32.powi(step));
            for i in 0..35 {
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.95 * v[i] + 0.05 * g[i] * g[i];
                let upd = (m[i] / bc1) / ((v[i] / bc2).sqrt() + 1e-8);
                p[i] -= cfg.lr as f32 * (upd + 0.2 * p[i]);
            }
            let got: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
            for i in 0..35 {
                assert!(
                    (got[i] - p[i]).abs() < 1e-6,
                    "step {step} elem {i}: {} vs {}",
                    got[i],
                    p[i]
                );
            }
        }
    }
}
