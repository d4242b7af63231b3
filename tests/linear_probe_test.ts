/** The linear probe of bench:synthetic: its optimum against a closed form, and separable data separated. */
import assert from "node:assert/strict";
import { fitLinearProbe, predictLinearProbe, probeAccuracy } from "../lib/train/linear_probe.ts";
import { Rng } from "../lib/rng.ts";

Deno.test("linear probe: reaches the penalised optimum of a case solved by hand", () => {
  // Two rows, z = +1 (class 1) and z = -1 (class 0), standardised as they are. By symmetry the optimum
  // has w1 = -w0 = a and zero biases; the mean loss log(1 + e^{-2a}) + l2 a^2 is least where
  // l2 a = sigmoid(-2a). Solved by bisection here, independently of the probe's Adam.
  const l2 = 0.05;
  let [lo, hi] = [0, 20];
  for (let i = 0; i < 200; i++) {
    const a = (lo + hi) / 2;
    if (l2 * a - 1 / (1 + Math.exp(2 * a)) < 0) lo = a;
    else hi = a;
  }
  const a = (lo + hi) / 2;
  const probe = fitLinearProbe(new Float32Array([1, -1]), new Int32Array([1, 0]), 1, {
    classes: 2,
    l2,
    iterations: 3000,
    lr: 0.02,
  });
  assert.ok(Math.abs(probe.weights[1] - a) < 1e-3, `w1 ${probe.weights[1]} vs ${a}`);
  assert.ok(Math.abs(probe.weights[0] + a) < 1e-3, `w0 ${probe.weights[0]} vs ${-a}`);
  assert.ok(Math.abs(probe.bias[0] - probe.bias[1]) < 1e-3, `biases ${probe.bias}`);
  const expected = Math.log(1 + Math.exp(-2 * a)) + l2 * a * a;
  assert.ok(Math.abs(probe.trainLoss - expected) < 1e-6, `loss ${probe.trainLoss} vs ${expected}`);
});

Deno.test("linear probe: separates three classes that differ in two of six features, on held-out rows", () => {
  const rng = new Rng(11);
  const rows = (n: number) => {
    const x = new Float32Array(n * 6);
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = i % 3;
      // Features 1 and 4 carry the class (offsets of 40 and 30 against noise of 1-3); the others are
      // noise on scales from 1 to 100, which the standardisation must even out.
      for (let j = 0; j < 6; j++) x[i * 6 + j] = rng.normal() * [3, 1, 100, 2, 1, 10][j];
      x[i * 6 + 1] += 40 * (y[i] - 1);
      x[i * 6 + 4] += 30 * (y[i] === 2 ? 1 : 0);
    }
    return { x, y };
  };
  const train = rows(60);
  const test = rows(300);
  const probe = fitLinearProbe(train.x, train.y, 6, { classes: 3 });
  assert.equal(probeAccuracy(probe, train.x, train.y), 100);
  assert.ok(probeAccuracy(probe, test.x, test.y) >= 99, `${probeAccuracy(probe, test.x, test.y)}%`);
  assert.deepEqual(Array.from(predictLinearProbe(probe, test.x).subarray(0, 6)), [0, 1, 2, 0, 1, 2]);
});

Deno.test("linear probe: bad input is refused with the values involved", () => {
  assert.throws(
    () => fitLinearProbe(new Float32Array(5), new Int32Array(2), 3, { classes: 2 }),
    /Features hold 5 values, not 2 x 3/,
  );
  assert.throws(
    () => fitLinearProbe(new Float32Array(2), new Int32Array([0, 4]), 1, { classes: 3 }),
    /Label 4 is outside \[0, 3\)/,
  );
});
