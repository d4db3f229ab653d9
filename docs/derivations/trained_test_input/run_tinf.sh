#!/bin/bash
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
nice -n 19 ./venv/bin/python train.py tanh 2 64 400000 20 602
nice -n 19 ./venv/bin/python train.py tanh 2 128 400000 20 603
nice -n 19 ./venv/bin/python train.py tanh 3 32 100000 20 701
nice -n 19 ./venv/bin/python train.py tanh 3 64 100000 20 702
