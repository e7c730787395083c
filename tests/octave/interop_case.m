function interop_case(mlstm_cmd, workdir, savefmt, fmt, cls, gate, state, outfile, extra)
  % Octave writes the inputs (save SAVEFMT), runs mlstm, loads mlstm's output and checks
  % size, class and values against reference_lstm (an independent implementation).
  % Raises error() on any mismatch, so octave-cli exits non-zero.
  if nargin < 9, extra = ''; end
  randn('state', sum(double([fmt cls gate state savefmt])));
  dims = struct('S', 2, 'C', 3, 'B', 4, 'T', 5, 'U', 1);
  sz = arrayfun(@(l) dims.(l), upper(fmt));
  if numel(sz) < 2, sz(end+1) = 1; end
  H = 2;
  inputSize = 1;
  for l = upper(fmt), if any(l == 'SC'), inputSize = inputSize * dims.(l); end, end
  nB = 1; if any(upper(fmt) == 'B'), nB = dims.B; end
  X = cast(randn(sz), cls);
  H0 = cast(0.5 * randn(H, nB), cls);
  C0 = 0.5 * randn(H, 1);                      % always double, shared by every observation
  weights = cast(0.5 * randn(4 * H, inputSize), cls);
  recurrentWeights = 0.5 * randn(4 * H, H);    % double: the single class of the others wins
  bias = 0.2 * randn(4 * H, 1);
  DataFormat = fmt;
  infile = fullfile(workdir, 'in.mat');
  save(savefmt, infile, 'X', 'H0', 'C0', 'weights', 'recurrentWeights', 'bias', 'DataFormat');
  cmd = sprintf('%s run "%s" -o "%s" GateActivationFunction=%s StateActivationFunction=%s %s', ...
                mlstm_cmd, infile, outfile, gate, state, extra);
  [status, out] = system(cmd);
  if status ~= 0, error('mlstm failed (%d): %s', status, out); end
  got = load(outfile);
  [Y, hiddenState, cellState, YFormat] = reference_lstm(X, H0, C0, weights, recurrentWeights, bias, fmt, gate, state);
  tol = 1e-12; if strcmp(cls, 'single'), tol = 1e-5; end
  if ~isempty(strfind(extra, 'mat73'))
    % Octave's load reads MAT v7.3 as generic HDF5: it ignores MATLAB_class, so single data
    % comes back as double (values unchanged). Classes of v7.3 files are checked with h5py instead.
    Y = double(Y); hiddenState = double(hiddenState); cellState = double(cellState);
  end
  check_output('Y', got.Y, Y, tol);
  check_output('hiddenState', got.hiddenState, hiddenState, tol);
  check_output('cellState', got.cellState, cellState, tol);
  yf = got.YFormat;
  if ~ischar(yf), yf = char(yf(:)'); end         % Octave reads v7.3 char as uint16 codes
  if ~strcmp(yf, YFormat), error('YFormat: expected %s, found %s', YFormat, yf); end
  printf('ok %s %s %s %s %s %s\n', savefmt, fmt, cls, gate, state, outfile);
end
