#!/bin/bash
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
act=$1; base=$2
nice -n 19 ./venv/bin/python train.py $act 3 32 400000 8 $((base+1))
nice -n 19 ./venv/bin/python train.py $act 3 64 400000 8 $((base+2))
