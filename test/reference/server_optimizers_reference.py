"""Reference trajectories for test/server-optimizers.test.ts, computed once with numpy in float64 (never run by npm test).

Straight from Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2 (m_{-1} = 0, v_{-1} = tau^2,
no bias correction unless noted), and FedAvgM (Hsu et al. 2019): m = beta*m + delta, x = x + lr*m.
Bias-corrected FedAdam: eta_t = eta*sqrt(1-beta2^t)/(1-beta1^t) (Kingma & Ba 2015, Sec. 2).
Inputs: x0 and, per round r = 1..5, the aggregated model mean_r = x_r + g_r with the fixed pseudo-gradients
g_r[j] = 0.01*sin(1.3*j + 0.7*r) + 0.002*r*(-1)**j - 0.004   (pseudo-gradient = mean - current global).

Run:  python3 test/reference/server_optimizers_reference.py   (numpy 2.4.6 here)
"""
import numpy as np

D, ROUNDS = 6, 5
x0 = np.array([0.5, -0.25, 0.125, 1.0, -1.5, 0.0])


def g(r):
    j = np.arange(D)
    return 0.01 * np.sin(1.3 * j + 0.7 * r) + 0.002 * r * (-1.0) ** j - 0.004


def run(kind, lr, beta1=0.9, beta2=0.99, tau=1e-3, momentum=0.0, bias=False):
    x = x0.copy()
    m = np.zeros(D)
    v = np.full(D, tau * tau)
    out = []
    for t in range(1, ROUNDS + 1):
        delta = g(t)  # mean - x
        if kind == "fedavgm":
            m = momentum * m + delta
            x = x + lr * m
        else:
            m = beta1 * m + (1 - beta1) * delta
            if kind == "fedadam":
                v = beta2 * v + (1 - beta2) * delta * delta
            elif kind == "fedyogi":
                v = v - (1 - beta2) * delta * delta * np.sign(v - delta * delta)
            else:
                v = v + delta * delta
            eta = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) if bias else lr
            x = x + eta * m / (np.sqrt(v) + tau)
        out.append(x.copy())
    return out


for name, kw in [("fedadam", dict(kind="fedadam", lr=0.01)),
                 ("fedadam-bias", dict(kind="fedadam", lr=0.01, bias=True)),
                 ("fedyogi", dict(kind="fedyogi", lr=0.01, tau=1e-2)),
                 ("fedadagrad", dict(kind="fedadagrad", lr=0.05, beta1=0.0, tau=1e-2)),
                 ("fedavgm", dict(kind="fedavgm", lr=1.0, momentum=0.9))]:
    traj = run(**kw)
    print(f"{name}: {kw}")
    for t, x in enumerate(traj, 1):
        print(f"  after round {t}: [" + ", ".join(repr(float(v)) for v in x) + "]")
