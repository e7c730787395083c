function frontend_case(executable, fmt, cls, gate, state, shared)
  % mlstm_lstm (the .m front end) against reference_lstm (Octave's own LSTM): size, class, values.
  randn('state', sum(double([fmt cls gate state])));
  dims = struct('S', 2, 'C', 3, 'B', 4, 'T', 5, 'U', 1);
  sz = arrayfun(@(l) dims.(l), upper(fmt));
  if numel(sz) < 2, sz(end+1) = 1; end
  H = 3;
  inputSize = 1;
  for l = upper(fmt), if any(l == 'SC'), inputSize = inputSize * dims.(l); end, end
  nB = 1; if any(upper(fmt) == 'B') && ~shared, nB = dims.B; end
  X = cast(randn(sz), cls);
  H0 = cast(0.5 * randn(H, nB), cls);
  C0 = 0.5 * randn(H, nB);
  W = 0.5 * randn(4 * H, inputSize);
  R = cast(0.5 * randn(4 * H, H), cls);
  b = 0.2 * randn(4 * H, 1);
  [Y, h, c] = mlstm_lstm(X, H0, C0, W, R, b, 'DataFormat', fmt, 'StateActivationFunction', state, ...
                         'GateActivationFunction', gate, 'Executable', executable);
  [Yr, hr, cr] = reference_lstm(X, H0, C0, W, R, b, fmt, gate, state);
  tol = 1e-12; if strcmp(cls, 'single'), tol = 1e-5; end
  check_output('Y', Y, Yr, tol); check_output('hiddenState', h, hr, tol); check_output('cellState', c, cr, tol);
  printf('ok %s %s %s %s size %s\n', fmt, cls, gate, state, mat2str(size(Y)));
end
