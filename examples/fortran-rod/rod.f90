! Heat conduction in a rod: explicit finite differences, fixed left end, insulated right end.
program heat_rod
  implicit none
  integer :: cells = 50, steps = 2000, i, step, report
  real(8) :: diffusivity = 0.25d0, hot_end = 100.0d0
  real(8), allocatable :: t(:), next(:)
  character(len=256) :: path
  namelist /rod/ cells, steps, diffusivity, hot_end

  call get_command_argument(1, path)
  open(10, file=trim(path), status='old', action='read')
  read(10, nml=rod)
  close(10)
  if (diffusivity > 0.5d0) then
    print '(A)', 'ERROR: the diffusion number is above 0.5: the scheme is unstable'
    stop 2
  end if
  allocate(t(cells), next(cells))
  t = 0.0d0
  report = max(1, steps / 10)
  do step = 1, steps
    t(1) = hot_end
    next(1) = hot_end
    do i = 2, cells - 1
      next(i) = t(i) + diffusivity * (t(i - 1) - 2.0d0 * t(i) + t(i + 1))
    end do
    next(cells) = t(cells) + 2.0d0 * diffusivity * (t(cells - 1) - t(cells))
    t = next
    if (mod(step, report) == 0) print '(A,I0,A,I0)', 'step ', step, ' of ', steps
  end do
  call write_results()
contains
  subroutine write_results()
    integer :: u
    open(newunit=u, file='profile.csv', status='replace', action='write')
    write(u, '(A)') 'x,temperature'
    do i = 1, cells
      write(u, '(F0.6,A,F0.6)') dble(i - 1) / dble(cells - 1), ',', t(i)
    end do
    close(u)
    open(newunit=u, file='summary.json', status='replace', action='write')
    write(u, '(A,F0.6,A,F0.6,A)') '{"mean_temperature": ', sum(t) / cells, &
      ', "right_end": ', t(cells), '}'
    close(u)
  end subroutine write_results
end program heat_rod
