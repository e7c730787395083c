function [Y, hiddenState, cellState] = mlstm_lstm(X, H0, C0, weights, recurrentWeights, bias, varargin)
%MLSTM_LSTM  MATLAB's lstm (Deep Learning Toolbox) computed by mlstm, for GNU Octave and for
%MATLAB without Deep Learning Toolbox.
%
%   [Y, hiddenState, cellState] = mlstm_lstm(X, H0, C0, weights, recurrentWeights, bias, ...
%                                            'DataFormat', 'CBT', Name, Value, ...)
%
%   Same arguments, sizes and classes as lstm. Name-value options (case-insensitive,
%   unambiguous prefixes allowed; Name=Value syntax works where the interpreter has it):
%     DataFormat               e.g. 'CBT' (required unless X is a formatted dlarray)
%     StateActivationFunction  'tanh' (default), 'softsign', 'relu'
%     GateActivationFunction   'sigmoid' (default), 'hard-sigmoid'
%     Engine                   'numpy' (default), 'cupy', 'auto'
%     Executable               the mlstm command (default: mlstm on the PATH), e.g. 'python3 -m mlstm'
%
%   The arguments go to mlstm in a temporary MAT v7 file, `mlstm run` computes, and the
%   outputs come back with lstm's classes and sizes. Temporary files are removed, also on
%   error. A failure in mlstm becomes error() with mlstm's own message.
%
%   Put this folder on the path with addpath (its location: `mlstm matlab-path`).

  engine = 'numpy';
  executable = '';
  tokens = {};
  if mod(numel(varargin), 2) ~= 0
    error('mlstm:arguments', 'mlstm_lstm: name-value options must come in pairs, found %d argument(s) after bias', numel(varargin));
  end
  for k = 1:2:numel(varargin)
    name = varargin{k};
    value = varargin{k + 1};
    if ~ischar(name) && ~(isa(name, 'string') && isscalar(name))
      error('mlstm:arguments', 'mlstm_lstm: expected an option name, found a %s', class(name));
    end
    name = char(name);
    if isa(value, 'string'), value = char(value); end
    if prefix_of(name, 'Engine', 1)
      engine = value;
    elseif prefix_of(name, 'Executable', 2)
      executable = value;
    else
      if ~ischar(value)
        error('mlstm:arguments', 'mlstm_lstm: %s: expected a character vector, found a %s', name, class(value));
      end
      tokens{end + 1} = sprintf('"%s=%s"', name, value); %#ok<AGROW>
    end
  end
  % A formatted dlarray (MATLAB with Deep Learning Toolbox) brings its own format.
  if isa(X, 'dlarray')
    fmt = dims(X);
    X = extractdata(X);
    if ~isempty(fmt) && ~any(strncmpi(varargin(1:2:end), 'DataFormat', 5))
      tokens{end + 1} = sprintf('"DataFormat=%s"', fmt);
    end
  end
  args = {H0, C0, weights, recurrentWeights, bias};
  for k = 1:numel(args)
    if isa(args{k}, 'dlarray'), args{k} = extractdata(args{k}); end
  end
  [H0, C0, weights, recurrentWeights, bias] = args{:}; %#ok<ASGLU>

  if isempty(executable)
    executable = 'mlstm';
  end
  base = tempname();
  infile = [base '_mlstm_in.mat'];
  outfile = [base '_mlstm_out.mat'];
  cleanup = onCleanup(@() remove_files({infile, outfile})); %#ok<NASGU>
  save(infile, 'X', 'H0', 'C0', 'weights', 'recurrentWeights', 'bias', '-v7');
  cmd = sprintf('%s run "%s" -o "%s" --engine %s -q %s 2>&1', executable, infile, outfile, engine, strjoin(tokens, ' '));
  [status, out] = system(cmd);
  if status ~= 0
    error('mlstm:failed', 'mlstm: %s', error_text(out, status, executable, infile));
  end
  S = load(outfile);
  Y = S.Y;
  hiddenState = S.hiddenState;
  cellState = S.cellState;
end

function tf = prefix_of(name, full, minimum)
  tf = numel(name) >= minimum && numel(name) <= numel(full) && strncmpi(name, full, numel(name));
end

function text = error_text(out, status, executable, infile)
  % mlstm's Error: line, without the temporary file's name (the caller never saw that file).
  lines = strsplit(strtrim(out), sprintf('\n'));
  text = '';
  for k = 1:numel(lines)
    if strncmp(lines{k}, 'Error: ', 7)
      text = lines{k}(8:end);
    end
  end
  text = strrep(text, [infile ': '], '');
  if isempty(text)
    text = sprintf('"%s" exited with status %d: %s', executable, status, strtrim(out));
  end
end

function remove_files(files)
  for k = 1:numel(files)
    if exist(files{k}, 'file')
      delete(files{k});
    end
  end
end
