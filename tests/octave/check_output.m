function check_output(name, got, want, tol)
  % Size, class and values (relative error, floored at 1) of one output against the reference.
  if ~isequal(size(got), size(want))
    error('%s: expected size %s, found %s', name, mat2str(size(want)), mat2str(size(got)));
  end
  if ~strcmp(class(got), class(want))
    error('%s: expected class %s, found %s', name, class(want), class(got));
  end
  err = max(abs(double(got(:)) - double(want(:))) ./ max(1, abs(double(want(:)))));
  if err > tol, error('%s: max error %g exceeds %g', name, err, tol); end
end
