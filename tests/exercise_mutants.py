"""Plausible wrong solutions, at least one per exercise: (text in the solution, its wrong replacement).
The proof (tests/test_exercise_proof.py, `python scripts/exercise.py prove --all`) requires each one to make
the exercise's grading tests fail. Not copied into a student copy (these lines sit next to the answers)."""

MUTANTS = {
    # ------------------------------------------------------------------ optim
    "central_difference": [("(2 * eps)", "eps"), ("x[index] = original\n", "\n")],
    "bce_with_logits": [("-g * x", "g * x"), ("np.exp(-np.abs(x))", "np.exp(-x)")],
    "cross_entropy_picked": [("-log_probs", "log_probs"), ("np.arange(len(targets)), targets", "targets, np.arange(len(targets))")],
    "gaussian_kl": [("- mu * mu", "+ mu * mu"), ("logvar.exp()", "logvar")],
    "sgd_momentum": [("(1 - self.dampening) * g", "self.dampening * g"), ("g.copy()", "np.zeros_like(g)")],
    "sgd_nesterov": [("g + self.momentum * buf if", "buf + self.momentum * g if")],
    "adam_bias_correction": [("beta2 ** t)", "beta2)"), ("m / (1 - beta1 ** t)", "m")],
    # ------------------------------------------------------------------ layers
    "im2col": [("(ph, ph), (pw, pw)", "(0, 2 * ph), (0, 2 * pw)")],
    "col2im_add": [("+=", "=")],
    "conv2d_forward": [("C_out // groups, -1)", "-1, C_out // groups).swapaxes(1, 2)")],
    "conv2d_backward": [("g.sum(axis=(0, 2, 3))", "g.sum(axis=(0, 2, 3)) / 2"),
                        ("conv2d_weight_grad(x, g,", "2 * conv2d_weight_grad(x, g,")],
    "conv_transpose2d_backward": [("[:, :, :H, :W]", "[:, :, -H:, -W:]"), ("conv2d_weight_grad(g, x,", "-conv2d_weight_grad(g, x,")],
    "conv2d_weight_grad": [("cols[:, i], axes", "cols[:, i, ::-1], axes")],
    "batch_norm_running_stats": [(" * (n / (n - 1))", ""), ("running_mean *= 1 - momentum", "running_mean *= momentum")],
    "batch_norm_eval": [("(running_mean, running_var)", "(running_mean, running_var * 0 + 1)")],
    "batch_norm_backward": [("- g.mean(axis=axes, keepdims=True) ", ""), ("return g * scale", "return g")],
    "dropout": [("/ np.asarray(1 - p, x.dtype)", "* np.asarray(1 - p, x.dtype)"), ("g * scaled_mask", "g")],
    "lstm_cell": [("F.tanh(a_g)", "F.sigmoid(a_g)"), ("f * c + i * g", "i * c + f * g"), ("o * F.tanh(c)", "o * c")],
    "gru_cell": [("(1 - z) * n + z * h", "z * n + (1 - z) * h"), ("x_n + r * h_n", "r * (x_n + h_n)")],
    "pixelcnn_masks": [('mask_type == "B"', 'mask_type == "A"'), (":kw // 2] = 1", ":kw // 2 + 1] = 1")],
    # ------------------------------------------------------------------ models
    "made_masks": [("upper[:, None] >= lower", "upper[:, None] > lower"), ("degrees[0][:, None] > degrees[-1]", "degrees[0][:, None] >= degrees[-1]")],
    "reparameterize": [("(0.5 * logvar).exp()", "logvar.exp()"), ("mu + sigma", "mu - sigma")],
    "neg_elbo": [("recon + kl, recon", "recon - kl, recon"), ('reduction="none").sum(axis=1)', 'reduction="none").mean(axis=1)')],
    "iwae_bound": [("np.mean(np.exp(", "np.sum(np.exp("), ("log_px_z + log_pz - log_qz", "log_px_z - log_pz + log_qz")],
    "gan_discriminator_loss": [("bce_loss(logits_real, ones)", "bce_loss(logits_real, zeros)")],
    "gan_generator_loss": [("np.ones(", "np.zeros(")],
    "additive_coupling_inverse": [("return y - t", "return y + t")],
    "affine_coupling_forward": [("s.sum(axis=1)", "-s.sum(axis=1)"), ("x * s.exp() + t", "(x + t) * s.exp()")],
    "affine_coupling_inverse": [("(y - t) * (-s).exp()", "y * (-s).exp() - t")],
    "revblock_inverse": [("self.g(Tensor(y1))", "self.g(Tensor(y2))"), ("y1 - self.f", "y1 + self.f")],
    "revblock_gradient": [("dy1 + dz1.data", "dz1.data")],
    # ------------------------------------------------------------------ rl
    "bellman_backup": [("gamma * model.T @ V", "model.T @ V")],
    "policy_evaluation": [(".sum(axis=1)", ".max(axis=1)")],
    "value_iteration": [(".max(axis=1)", ".mean(axis=1)")],
    "sarsa_target": [("q_next_rows[np.arange(len(next_action)), next_action]", "q_next_rows.max(axis=-1)")],
    "q_learning_target": [(".max(axis=-1)", ".mean(axis=-1)"), ("(1.0 - terminated) * ", "")],
    "td_error": [("(1.0 - terminated) * ", ""), ("- V[run, s]", "+ V[run, s]")],
    # (replacing instead of accumulating traces, "+= 1.0" -> "= 1.0", is not caught: no test revisits a pair)
    "eligibility_traces": [("E *= gamma * lam", "E *= lam"), ("[:, None, None] * E", "[:, None, None] * (E > 0)")],
    "dqn_target": [("next_q_online.argmax(axis=1)", "next_q_target.argmax(axis=1)"), ("(1.0 - terminated) * ", "")],
    "n_step_return": [("self.gamma ** i", "self.gamma ** (i + 1)")],
    "reward_to_go": [("np.float32(gamma) * running", "running")],
    "policy_gradient_loss": [("return -(taken", "return (taken")],
    "reinforce_baseline": [("returns - baseline_values", "returns + baseline_values")],
    "gae": [("(1.0 - dones[t])", "(1.0 - terminated[t])"), ("gamma * lam * (1.0", "lam * (1.0")],
    "es_gradient": [("(2 * m * cfg.sigma)", "(m * cfg.sigma)"), ("scores[:, 0] - scores[:, 1]", "scores[:, 1] - scores[:, 0]")],
}
