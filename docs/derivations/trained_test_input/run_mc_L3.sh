#!/bin/bash
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
act=$1
nice -n 19 ./venv/bin/python mc_out.py $act 32 3 400000 31
nice -n 19 ./venv/bin/python mc_out.py $act 64 3 200000 32
nice -n 19 ./venv/bin/python mc_out.py $act 128 3 100000 33
