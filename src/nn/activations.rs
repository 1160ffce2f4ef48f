//! Point-wise activations, applied in place (fused into conv outputs).

/// A point-wise non-linearity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// Identity.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x >= 0`, `slope * x` otherwise.
    LeakyRelu(f32),
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    /// Applies the activation to every element of `xs` in place.
    pub fn apply(self, xs: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::LeakyRelu(s) => xs.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v *= s
                }
            }),
            Activation::Sigmoid => xs.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        }
    }

    /// The activation of one value.
    pub fn eval(self, v: f32) -> f32 {
        let mut a = [v];
        self.apply(&mut a);
        a[0]
    }
}
