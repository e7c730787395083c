"""Build the optional compiled CPU time loop; everything else is in pyproject.toml.

optional=True: without a C compiler the install still succeeds, and the NumPy engine runs its
pure-NumPy loop instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mlstm.engines._cpu_lstm",
            sources=["mlstm/engines/_cpu_lstm.c"],
            extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math", "-std=c99"],
            optional=True,
        )
    ]
)
