#!/bin/bash
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
for act in tanh sin; do
nice -n 19 ./venv/bin/python theta1_mc.py $act 3 8 8000000 51
nice -n 19 ./venv/bin/python theta1_mc.py $act 3 16 4000000 52
nice -n 19 ./venv/bin/python theta1_mc.py $act 3 32 2000000 53
done
