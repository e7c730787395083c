function [Y, hiddenState, cellState, YFormat] = reference_lstm(X, H0, C0, W, R, b, fmt, gate, state)
  % An independent LSTM written in Octave's language from docs/BEHAVIOUR.md §1-§3 (shares no code with mlstm).
  % X is laid out as fmt says (labels S C B T U); returns Y in X's order minus S, C first if absent.
  if nargin < 8, gate = 'sigmoid'; end
  if nargin < 9, state = 'tanh'; end
  fmt = upper(fmt);
  orig = fmt;
  n = numel(fmt);
  sz = size(X);
  sz(end+1:n) = 1;
  if ~any(fmt == 'C'), fmt = [fmt 'C']; sz(end+1) = 1; end
  if ~any(fmt == 'B'), fmt = [fmt 'B']; sz(end+1) = 1; end
  X = reshape(X, sz);
  sdims = find(fmt == 'S');
  order = [sdims, find(fmt == 'C'), find(fmt == 'B'), find(fmt == 'T'), find(fmt == 'U')];
  Xp = permute(X, [order, numel(fmt) + 1]);
  nB = sz(fmt == 'B'); nT = sz(fmt == 'T');
  % Column-major merge of S..S C: element (s1, s2, ..., c) is row s1 + S1*(s2 + ...) (0-based).
  Xp = reshape(Xp, [], nB, nT);
  cls = 'double';
  if any(cellfun(@(a) isa(a, 'single'), {X, H0, C0, W, R, b})), cls = 'single'; end
  Xp = cast(Xp, cls); W = cast(W, cls); R = cast(R, cls); b = cast(b(:), cls);
  nH = size(H0, 1);
  h = cast(repmat(reshape(H0, nH, []), 1, nB / size(reshape(H0, nH, []), 2)), cls);
  c = cast(repmat(reshape(C0, nH, []), 1, nB / size(reshape(C0, nH, []), 2)), cls);
  switch gate
    case 'sigmoid', sg = @(x) 1 ./ (1 + exp(-x));
    case 'hard-sigmoid', sg = @(x) max(0, min(1, 0.2 * x + 0.5));
  end
  switch state
    case 'tanh', sc = @tanh;
    case 'softsign', sc = @(x) x ./ (1 + abs(x));
    case 'relu', sc = @(x) max(x, 0);
  end
  Yc = zeros(nH, nB, nT, cls);
  for t = 1:nT
    z = W * Xp(:, :, t) + R * h + b;
    ig = sg(z(1:nH, :)); fg = sg(z(nH+1:2*nH, :)); g = sc(z(2*nH+1:3*nH, :)); og = sg(z(3*nH+1:4*nH, :));
    c = fg .* c + ig .* g;
    h = og .* sc(c);
    Yc(:, :, t) = h;
  end
  % Back to X's order minus S (C first if X had none); U and a missing B are singleton.
  ofmt = orig(orig ~= 'S');
  if ~any(ofmt == 'C'), ofmt = ['C' ofmt]; end
  cbt = ofmt(ofmt ~= 'U');
  if ~any(cbt == 'B'), cbt = [cbt 'B']; end
  perm = arrayfun(@(l) find('CBT' == l), cbt);
  osz = ones(1, numel(ofmt));
  osz(ofmt == 'C') = nH; osz(ofmt == 'B') = nB; osz(ofmt == 'T') = nT;
  Y = reshape(permute(Yc, perm), [osz 1 1]);
  YFormat = ofmt;
  Y = cast(Y, class(X));
  hiddenState = cast(h, class(H0));
  cellState = cast(c, class(C0));
end
