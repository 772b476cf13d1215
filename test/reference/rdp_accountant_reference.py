"""Reference values for test/dp-accountant.test.ts, computed once with numpy/scipy (never run by npm test).

Neither dp-accounting, tensorflow-privacy nor opacus is on this machine's package index, so this script
is an independent Python implementation of the same computation those libraries perform (TensorFlow
Privacy / dp_accounting rdp_privacy_accountant.py: _compute_log_a_int, _compute_log_a_frac, _log_erfc via
scipy.special.log_ndtr, _compute_epsilon with the improved conversion of Balle et al. 2020 Thm. 21;
Opacus analysis/rdp.py is the same code). It uses scipy's special functions (gammaln, binom, log_ndtr),
none of which the TypeScript implementation has, so agreement checks the TypeScript log-erfc, binomials
and log-space sums.

Before printing the federated settings it reproduces the values the libraries publish in their own tests,
so the script itself is checked against the libraries:
  TF Privacy compute_dp_sgd_privacy_test.py:  (n=60000, batch=150, z=1.3, epochs=15, delta=1e-5)
      -> eps 0.7242234026109595 at order 19;  (100000, 100, 1.0, 30, 1e-7) -> 1.4154988495444842 at 13;
      (1e8, 1024, 0.1, 10, 1e-7) -> 5907982.3113978775 at 1.25
  Opacus tests/accountants_test.py: z=1.5, q=0.04, steps=int(90/0.04), delta=1e-5 -> eps 7.32911117143

Run:  python3 test/reference/rdp_accountant_reference.py   (numpy 2.4.6, scipy 1.17.1 here)
"""
import math

import numpy as np
from scipy import special

TF_ORDERS = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5] + list(range(5, 64)) + [128, 256, 512]
OPACUS_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def log_add(x, y):
    a, b = min(x, y), max(x, y)
    if a == -np.inf:
        return b
    return math.log1p(math.exp(a - b)) + b


def log_sub(x, y):
    if x < y:
        raise ValueError("negative")
    if y == -np.inf:
        return x
    if x == y:
        return -np.inf
    try:
        return math.log(math.expm1(x - y)) + y
    except OverflowError:
        return x


def log_erfc(x):
    return math.log(2) + special.log_ndtr(-x * 2 ** 0.5)


def log_a_int(q, sigma, alpha):
    log_a = -np.inf
    for i in range(alpha + 1):
        log_coef = special.gammaln(alpha + 1) - special.gammaln(i + 1) - special.gammaln(alpha - i + 1)
        s = log_coef + i * math.log(q) + (alpha - i) * math.log(1 - q) + (i * i - i) / (2 * sigma ** 2)
        log_a = log_add(log_a, s)
    return float(log_a)


def log_a_frac(q, sigma, alpha):
    log_a0, log_a1 = -np.inf, -np.inf
    i = 0
    z0 = sigma ** 2 * math.log(1 / q - 1) + 0.5
    while True:
        coef = special.binom(alpha, i)
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log(1 - q)
        log_t1 = log_coef + j * math.log(q) + i * math.log(1 - q)
        log_e0 = math.log(0.5) + log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma ** 2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma ** 2) + log_e1
        if coef > 0:
            log_a0 = log_add(log_a0, log_s0)
            log_a1 = log_add(log_a1, log_s1)
        else:
            log_a0 = log_sub(log_a0, log_s0)
            log_a1 = log_sub(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30:
            break
    return log_add(log_a0, log_a1)


def rdp_one(q, sigma, alpha):
    if q == 0:
        return 0.0
    if q == 1.0:
        return alpha / (2 * sigma ** 2)
    if float(alpha).is_integer():
        return log_a_int(q, sigma, int(alpha)) / (alpha - 1)
    return log_a_frac(q, sigma, alpha) / (alpha - 1)


def compute_rdp(q, sigma, steps, orders):
    return np.array([rdp_one(q, sigma, a) for a in orders]) * steps


def compute_epsilon(orders, rdp, delta):
    eps = []
    for a, r in zip(orders, rdp):
        if delta ** 2 + math.expm1(-r) > 0:
            e = 0.0
        elif a > 1.01:
            e = r + math.log1p(-1 / a) - math.log(delta * a) / (a - 1)
        else:
            e = np.inf
        eps.append(e)
    k = int(np.argmin(eps))
    return max(0.0, eps[k]), orders[k]


def standard_epsilon(orders, rdp, delta):
    eps = [r - math.log(delta) / (a - 1) for a, r in zip(orders, rdp)]
    k = int(np.argmin(eps))
    return eps[k], orders[k]


def main():
    print("published values reproduced:")
    for n, b, z, epochs, delta, want in [(60000, 150, 1.3, 15, 1e-5, 0.7242234026109595),
                                         (100000, 100, 1.0, 30, 1e-7, 1.4154988495444842),
                                         (100000000, 1024, 0.1, 10, 1e-7, 5907982.3113978775)]:
        q = b / n
        steps = int(math.ceil(epochs * n / b))
        eps, order = compute_epsilon(TF_ORDERS, compute_rdp(q, z, steps, TF_ORDERS), delta)
        print(f"  tf-privacy n={n} b={b} z={z} epochs={epochs}: eps={eps!r} order={order} (published {want!r})")
    eps, order = compute_epsilon(OPACUS_ORDERS, compute_rdp(0.04, 1.5, int(90 / 0.04), OPACUS_ORDERS), 1e-5)
    print(f"  opacus z=1.5 q=0.04 steps=2250: eps={eps!r} order={order} (published 7.32911117143)")

    print("federated settings (q = sites per round / sites, z, rounds, delta) with TF_ORDERS:")
    for q, z, rounds, delta in [(1.0, 1.0, 5, 1e-5), (1.0, 0.8, 50, 1e-5), (2 / 3, 1.1, 20, 1e-3), (0.3, 0.8, 100, 1e-5),
                                (0.1, 1.2, 1000, 1e-6), (0.5, 2.0, 200, 1e-5), (0.05, 0.6, 500, 1e-5)]:
        rdp = compute_rdp(q, z, rounds, TF_ORDERS)
        eps, order = compute_epsilon(TF_ORDERS, rdp, delta)
        seps, sorder = standard_epsilon(TF_ORDERS, rdp, delta)
        print(f"  q={q!r} z={z} rounds={rounds} delta={delta}: improved eps={eps!r} order={order}; standard eps={seps!r} order={sorder}")

    print("log erfc at sample points:")
    for x in [-30.0, -5.5, -2.0, -0.3, 0.0, 0.4, 1.99, 2.0, 3.7, 12.5, 40.0, 300.0]:
        print(f"  x={x!r}: {log_erfc(x)!r}")


if __name__ == "__main__":
    main()
