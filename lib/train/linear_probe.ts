/**
 * A linear probe: multinomial logistic regression on frozen features, standardised with the training
 * rows' mean and standard deviation, with an L2 penalty on the weights, trained full-batch with Adam in
 * float64. Small enough (hundreds of features, a few thousand rows) that its cost does not matter next to
 * the feature extraction.
 */

export interface ProbeOptions {
  classes: number;
  /** L2 penalty on the weights (not the biases), per row of the mean loss. */
  l2?: number;
  iterations?: number;
  lr?: number;
}

export interface LinearProbe {
  /** (classes, dim) weights on the standardised features, and the biases. */
  weights: Float64Array;
  bias: Float64Array;
  mean: Float64Array;
  std: Float64Array;
  dim: number;
  classes: number;
  /** The penalised mean cross-entropy on the training rows at the end. */
  trainLoss: number;
}

/** Fits a probe on `n` rows of `dim` features (row-major) with labels in [0, classes). */
export function fitLinearProbe(
  x: Float32Array,
  labels: Int32Array,
  dim: number,
  opts: ProbeOptions,
): LinearProbe {
  const n = labels.length;
  const k = opts.classes;
  if (x.length !== n * dim) throw new RangeError(`Features hold ${x.length} values, not ${n} x ${dim}`);
  if (n === 0) throw new RangeError("A linear probe needs at least one training row");
  for (const l of labels) {
    if (!(l >= 0 && l < k)) throw new RangeError(`Label ${l} is outside [0, ${k})`);
  }
  const l2 = opts.l2 ?? 1e-3;
  const iterations = opts.iterations ?? 500;
  const lr = opts.lr ?? 0.05;
  const mean = new Float64Array(dim);
  const std = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += x[i * dim + j] / n;
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) std[j] += (x[i * dim + j] - mean[j]) ** 2 / n;
  // A feature that is constant on the training rows carries nothing; 1 keeps it finite.
  for (let j = 0; j < dim; j++) std[j] = std[j] > 1e-12 ? Math.sqrt(std[j]) : 1;
  const z = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) z[i * dim + j] = (x[i * dim + j] - mean[j]) / std[j];
  }

  const p = new Float64Array(k * dim + k); // weights then biases
  const grad = new Float64Array(p.length);
  const m1 = new Float64Array(p.length);
  const m2 = new Float64Array(p.length);
  const logits = new Float64Array(k);
  let loss = 0;
  for (let t = 1; t <= iterations + 1; t++) {
    grad.fill(0);
    loss = 0;
    for (let i = 0; i < n; i++) {
      const row = z.subarray(i * dim, (i + 1) * dim);
      let max = -Infinity;
      for (let c = 0; c < k; c++) {
        let s = p[k * dim + c];
        for (let j = 0; j < dim; j++) s += p[c * dim + j] * row[j];
        logits[c] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let c = 0; c < k; c++) sum += logits[c] = Math.exp(logits[c] - max);
      loss -= Math.log(logits[labels[i]] / sum) / n;
      for (let c = 0; c < k; c++) {
        const d = (logits[c] / sum - (c === labels[i] ? 1 : 0)) / n;
        grad[k * dim + c] += d;
        for (let j = 0; j < dim; j++) grad[c * dim + j] += d * row[j];
      }
    }
    for (let q = 0; q < k * dim; q++) {
      loss += 0.5 * l2 * p[q] * p[q];
      grad[q] += l2 * p[q];
    }
    if (t > iterations) break; // the last pass only measures the loss of the final weights
    for (let q = 0; q < p.length; q++) {
      m1[q] = 0.9 * m1[q] + 0.1 * grad[q];
      m2[q] = 0.999 * m2[q] + 0.001 * grad[q] * grad[q];
      const mh = m1[q] / (1 - 0.9 ** t);
      const vh = m2[q] / (1 - 0.999 ** t);
      p[q] -= (lr * mh) / (Math.sqrt(vh) + 1e-8);
    }
  }
  return {
    weights: p.slice(0, k * dim),
    bias: p.slice(k * dim),
    mean,
    std,
    dim,
    classes: k,
    trainLoss: loss,
  };
}

/** The probe's class for each of the rows of `x`. */
export function predictLinearProbe(probe: LinearProbe, x: Float32Array): Int32Array {
  const { dim, classes: k } = probe;
  const n = x.length / dim;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = -Infinity;
    for (let c = 0; c < k; c++) {
      let s = probe.bias[c];
      for (let j = 0; j < dim; j++) {
        s += probe.weights[c * dim + j] * ((x[i * dim + j] - probe.mean[j]) / probe.std[j]);
      }
      if (s > best) [best, out[i]] = [s, c];
    }
  }
  return out;
}

/** Percent of rows whose predicted class is the label. */
export function probeAccuracy(probe: LinearProbe, x: Float32Array, labels: Int32Array): number {
  const pred = predictLinearProbe(probe, x);
  let right = 0;
  for (let i = 0; i < labels.length; i++) if (pred[i] === labels[i]) right++;
  return labels.length ? (100 * right) / labels.length : 0;
}
